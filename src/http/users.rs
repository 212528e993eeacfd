//! User routes (reference §1.1-§1.5): thin handlers over [`crate::services::users::UserService`].

use axum::extract::{RawPathParams, State};
use axum::routing::{get, patch, post};

use super::envelope::{ApiResponse, ApiResult};
use super::extract::{QueryMap, SunbirdBody};
use super::{Access, AppState, RouteSpec, route};
use crate::domain::ErrorCode;
use crate::domain::user::StatusChange;
use crate::services::access::Caller;
use crate::services::managed::UserRead;
use crate::services::users::input::{CreateRoute, UpdateRoute};
use crate::services::users::view::{ReadVersion, SearchVersion};

pub fn routes() -> Vec<RouteSpec> {
    use Access::{Private, Public, Token};
    vec![
        route("/v1/user/create", "USRCRT", Public, post(create_admin)),
        route("/v2/user/create", "USRCRT", Public, post(create_admin)),
        route("/v3/user/create", "USRCRT", Public, post(create_admin)),
        route("/v1/ssouser/create", "USRCRT", Public, post(create_sso)),
        route("/v1/user/signup", "USRCRT", Public, post(signup_v1)),
        route("/v4/user/create", "USRCRT", Token, post(create_managed)),
        route(
            "/v1/manageduser/create",
            "USRCRT",
            Token,
            post(create_managed),
        ),
        route(
            "/v2/manageduser/create",
            "USRCRT",
            Token,
            post(create_managed_v2),
        ),
        route("/v1/user/managed/{id}", "USRRED", Token, get(list_managed)),
        route("/v2/user/signup", "USRCRT", Public, post(signup_v2)),
        route("/v1/user/read/{uid}", "USRRED", Token, get(read_v3)),
        route("/v2/user/read/{uid}", "USRRED", Token, get(read_v3)),
        route("/v3/user/read/{uid}", "USRRED", Token, get(read_v3)),
        route("/v4/user/read/{uid}", "USRRED", Token, get(read_v4)),
        route("/v5/user/read/{uid}", "USRRED", Token, get(read_v5)),
        route(
            "/private/user/v1/read/{uid}",
            "USRRED",
            Private,
            get(read_private),
        ),
        route("/v1/user/update", "USRUPD", Token, patch(update_v1)),
        route("/v2/user/update", "USRUPD", Token, patch(update_v2)),
        route("/v3/user/update", "USRUPD", Token, patch(update_v3)),
        route(
            "/private/user/v1/update",
            "USRUPD",
            Private,
            patch(update_v3),
        ),
        route("/v1/user/search", "USRSER", Token, post(search_v1)),
        route("/v2/user/search", "USRSER", Token, post(search_v2)),
        route("/v3/user/search", "USRSER", Token, post(search_v3)),
        route(
            "/private/user/v1/search",
            "USRSER",
            Private,
            post(search_v1),
        ),
        route("/v1/user/block", "USRBLOK", Token, post(block)),
        route("/v1/user/unblock", "USRUNBLOK", Token, post(unblock)),
        route("/v1/user/delete", "USRDLT", Token, post(delete)),
        route("/private/user/v1/lookup", "USRLKP", Private, post(lookup)),
        route(
            "/private/user/v1/migrate",
            "USRMIG",
            Private,
            patch(migrate),
        ),
        route(
            "/v1/user/ownership/transfer",
            "UOWNTRANS",
            Token,
            post(transfer_ownership),
        ),
        route(
            "/private/user/v1/identifier/freeup",
            "IDNTFREE",
            Private,
            post(free_up),
        ),
        route(
            "/v1/user/exists/{key}/{value}",
            "UEXIST",
            Public,
            get(exists_v1),
        ),
        route(
            "/v2/user/exists/{key}/{value}",
            "UEXIST",
            Token,
            get(exists_v2),
        ),
        route(
            "/v1/user/get/{key}/{value}",
            "USRRED",
            Public,
            get(get_by_key),
        ),
        route(
            "/v2/user/get/{key}/{value}",
            "USRRED",
            Token,
            get(get_by_key),
        ),
        route("/v1/user/getuser", "USRRED", Public, post(get_by_login_id)),
    ]
}

fn param(params: &RawPathParams, name: &str) -> String {
    params
        .iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
        .unwrap_or_default()
}

async fn create(
    state: AppState,
    caller: Caller,
    route: CreateRoute,
    body: SunbirdBody,
) -> ApiResponse {
    Ok(ApiResult(
        state.users.create(&caller, route, &body.0).await?,
    ))
}

async fn create_admin(
    State(state): State<AppState>,
    caller: Caller,
    body: SunbirdBody,
) -> ApiResponse {
    create(state, caller, CreateRoute::Admin, body).await
}

async fn create_sso(
    State(state): State<AppState>,
    caller: Caller,
    body: SunbirdBody,
) -> ApiResponse {
    create(state, caller, CreateRoute::Sso, body).await
}

async fn signup_v1(
    State(state): State<AppState>,
    caller: Caller,
    body: SunbirdBody,
) -> ApiResponse {
    create(state, caller, CreateRoute::SignupV1, body).await
}

async fn signup_v2(
    State(state): State<AppState>,
    caller: Caller,
    body: SunbirdBody,
) -> ApiResponse {
    create(state, caller, CreateRoute::SignupV2, body).await
}

/// `/v4/user/create` and `/v1/manageduser/create` answer the limit with Sunbird's legacy name.
async fn create_managed(
    State(state): State<AppState>,
    caller: Caller,
    body: SunbirdBody,
) -> ApiResponse {
    Ok(ApiResult(
        state
            .managed
            .create(&caller, &body.0)
            .await
            .map_err(|error| {
                error.legacy_name(
                    ErrorCode::managedUserLimitExceeded,
                    "MANAGED_USER_LIMIT_EXCEEDED",
                )
            })?,
    ))
}

async fn create_managed_v2(
    State(state): State<AppState>,
    caller: Caller,
    body: SunbirdBody,
) -> ApiResponse {
    Ok(ApiResult(state.managed.create(&caller, &body.0).await?))
}

async fn list_managed(
    State(state): State<AppState>,
    caller: Caller,
    params: RawPathParams,
    query: QueryMap,
) -> ApiResponse {
    let parent = param(&params, "id");
    Ok(ApiResult(
        state
            .managed
            .list(
                &caller,
                &parent,
                query.flag("withTokens"),
                query.get("sortBy"),
                query.get("order"),
            )
            .await?,
    ))
}

async fn migrate(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.migration.migrate(&caller, &body.0).await?))
}

async fn transfer_ownership(
    State(state): State<AppState>,
    caller: Caller,
    body: SunbirdBody,
) -> ApiResponse {
    Ok(ApiResult(state.ownership.transfer(&caller, &body.0).await?))
}

async fn free_up(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.users.free_up(&caller, &body.0).await?))
}

async fn read(
    state: AppState,
    caller: Caller,
    params: RawPathParams,
    query: QueryMap,
    version: ReadVersion,
    private: bool,
) -> ApiResponse {
    let uid = param(&params, "uid");
    let fields = query.list("fields");
    // `?provider=&idType=`: the path id is an external id of that provider.
    let external = query
        .get("provider")
        .map(|provider| (provider, query.get("idType")));
    Ok(ApiResult(
        state
            .managed
            .read(
                &caller,
                &uid,
                UserRead {
                    external,
                    version,
                    private,
                    fields: &fields,
                    with_tokens: query.flag("withTokens"),
                },
            )
            .await?,
    ))
}

async fn read_v3(
    State(state): State<AppState>,
    caller: Caller,
    params: RawPathParams,
    query: QueryMap,
) -> ApiResponse {
    read(state, caller, params, query, ReadVersion::V3, false).await
}

async fn read_v4(
    State(state): State<AppState>,
    caller: Caller,
    params: RawPathParams,
    query: QueryMap,
) -> ApiResponse {
    read(state, caller, params, query, ReadVersion::V4, false).await
}

async fn read_v5(
    State(state): State<AppState>,
    caller: Caller,
    params: RawPathParams,
    query: QueryMap,
) -> ApiResponse {
    read(state, caller, params, query, ReadVersion::V5, false).await
}

async fn read_private(
    State(state): State<AppState>,
    caller: Caller,
    params: RawPathParams,
    query: QueryMap,
) -> ApiResponse {
    read(state, caller, params, query, ReadVersion::V3, true).await
}

async fn update(
    state: AppState,
    caller: Caller,
    route: UpdateRoute,
    body: SunbirdBody,
) -> ApiResponse {
    Ok(ApiResult(
        state.managed.update(&caller, route, &body.0).await?,
    ))
}

async fn update_v1(
    State(state): State<AppState>,
    caller: Caller,
    body: SunbirdBody,
) -> ApiResponse {
    update(state, caller, UpdateRoute::V1, body).await
}

async fn update_v2(
    State(state): State<AppState>,
    caller: Caller,
    body: SunbirdBody,
) -> ApiResponse {
    update(state, caller, UpdateRoute::V2, body).await
}

async fn update_v3(
    State(state): State<AppState>,
    caller: Caller,
    body: SunbirdBody,
) -> ApiResponse {
    update(state, caller, UpdateRoute::V3, body).await
}

async fn search_v1(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryMap,
    body: SunbirdBody,
) -> ApiResponse {
    Ok(ApiResult(
        state
            .users
            .search(&caller, SearchVersion::V1, &body.0, &query.list("fields"))
            .await?,
    ))
}

async fn search_v2(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryMap,
    body: SunbirdBody,
) -> ApiResponse {
    Ok(ApiResult(
        state
            .users
            .search(&caller, SearchVersion::V2, &body.0, &query.list("fields"))
            .await?,
    ))
}

async fn search_v3(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryMap,
    body: SunbirdBody,
) -> ApiResponse {
    Ok(ApiResult(
        state
            .users
            .search(&caller, SearchVersion::V3, &body.0, &query.list("fields"))
            .await?,
    ))
}

async fn status(
    state: AppState,
    caller: Caller,
    change: StatusChange,
    body: SunbirdBody,
) -> ApiResponse {
    Ok(ApiResult(
        state.users.change_status(&caller, change, &body.0).await?,
    ))
}

async fn block(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    status(state, caller, StatusChange::Block, body).await
}

async fn unblock(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    status(state, caller, StatusChange::Unblock, body).await
}

async fn delete(State(state): State<AppState>, caller: Caller, body: SunbirdBody) -> ApiResponse {
    status(state, caller, StatusChange::Delete, body).await
}

async fn lookup(State(state): State<AppState>, body: SunbirdBody) -> ApiResponse {
    Ok(ApiResult(state.users.lookup(&body.0).await?))
}

async fn exists_v1(
    State(state): State<AppState>,
    caller: Caller,
    params: RawPathParams,
) -> ApiResponse {
    let key = param(&params, "key");
    let value = param(&params, "value");
    Ok(ApiResult(
        state
            .users
            .exists(&caller, &key, &value, false, (None, false))
            .await?,
    ))
}

/// With `[captcha]` on, the reCAPTCHA answer comes as `?captchaResponse=`, and `?app=` names a
/// mobile app (its own secret).
async fn exists_v2(
    State(state): State<AppState>,
    caller: Caller,
    params: RawPathParams,
    query: QueryMap,
) -> ApiResponse {
    let key = param(&params, "key");
    let value = param(&params, "value");
    let captcha = (query.get("captchaResponse"), query.get("app").is_some());
    Ok(ApiResult(
        state
            .users
            .exists(&caller, &key, &value, true, captcha)
            .await?,
    ))
}

async fn get_by_key(
    State(state): State<AppState>,
    caller: Caller,
    params: RawPathParams,
) -> ApiResponse {
    let key = param(&params, "key");
    let value = param(&params, "value");
    Ok(ApiResult(
        state.users.get_by_key(&caller, &key, &value).await?,
    ))
}

async fn get_by_login_id(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryMap,
    body: SunbirdBody,
) -> ApiResponse {
    Ok(ApiResult(
        state
            .users
            .get_by_login_id(&caller, &body.0, &query.list("fields"))
            .await?,
    ))
}
