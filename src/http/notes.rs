//! Legacy note routes (reference §1.14): thin handlers over
//! [`crate::services::notes::NoteService`].

use axum::extract::{Path, State};
use axum::routing::{delete, get, patch, post};

use super::envelope::{ApiResponse, ApiResult};
use super::extract::SunbirdBody;
use super::{Access, AppState, RouteSpec, route};
use crate::services::access::Caller;

pub fn routes() -> Vec<RouteSpec> {
    use Access::Token;
    vec![
        route("/v1/note/create", "NOTECRT", Token, post(create)),
        route("/v1/note/read/{noteId}", "NOTERED", Token, get(read)),
        route("/v1/note/update/{noteId}", "NOTEUPD", Token, patch(update)),
        route("/v1/note/search", "NOTESER", Token, post(search)),
        route("/v1/note/delete/{noteId}", "NOTEDEL", Token, delete(remove)),
    ]
}

async fn create(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.notes.create(&caller, &body.0).await?))
}

async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResponse {
    Ok(ApiResult(state.notes.read(&caller, &id).await?))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: SunbirdBody,
) -> ApiResponse {
    Ok(ApiResult(state.notes.update(&caller, &id, &body.0).await?))
}

async fn search(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.notes.search(&caller, &body.0).await?))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResponse {
    Ok(ApiResult(state.notes.delete(&caller, &id).await?))
}
