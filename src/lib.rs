//! userorg: Sunbird Lern UserOrg re-implemented.
