//! Stateless use cases over the store, the search index and the actor clients. Handlers call
//! these; they validate input, authorise, and either read directly or send a command to the
//! owning actor.

pub mod access;
pub mod audit;
pub mod bulk;
pub mod captcha;
pub mod consent;
pub mod data_sync;
pub mod declarations;
pub mod feed;
pub mod files;
pub mod frameworks;
pub mod gateway;
pub mod health;
pub mod import;
pub mod json;
pub mod locations;
pub mod managed;
pub mod merge;
pub mod migration;
pub mod network;
pub mod notes;
pub mod notifications;
pub mod organisations;
pub mod otp;
pub mod ownership;
pub mod preferences;
pub mod reset;
pub mod roles;
pub mod search;
pub mod settings;
pub mod signin;
pub mod tnc;
pub mod users;
