//! userorg: Sunbird Lern UserOrg re-implemented.

pub mod auth;
