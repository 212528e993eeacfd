//! API tests through the real router: the whole application on random ports, embedded engines,
//! exact Sunbird envelopes, codes and messages.

mod audit;
mod auth;
mod canary;
mod consistency;
mod data_sync;
mod durability;
mod envelope;
mod failures;
mod gateway;
mod grants;
mod helpers;
mod jwt;
mod keys;
mod locations;
mod lookup;
mod matrix;
mod multi_instance;
mod network;
mod orgs;
mod ownership;
mod pii;
mod preferences;
mod redis_cache;
mod restart;
mod roles;
mod settings;
mod signin;
mod time;
mod tls;
mod user_create;
mod user_read;
mod user_search;
mod user_status;
mod user_update;
mod validation;
