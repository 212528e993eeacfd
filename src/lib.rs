//! userorg: Sunbird Lern UserOrg re-implemented.

pub mod search;
