//! Stateless use cases over the store, the search index and the actor clients. Handlers call
//! these; they validate input, authorise, and either read directly or send a command to the
//! owning actor.

pub mod access;
pub mod indexing;
pub mod json;
pub mod organisations;
pub mod orgs;
pub mod roles;
pub mod users;
