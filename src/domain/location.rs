//! The location type hierarchy (Sunbird `sunbird_valid_location_types`): an ordered list of
//! types, highest level first, and the parent rule between two levels.

/// The type Sunbird lets skip one level: a school may hang under a block or a cluster.
const SKIPPING_TYPE: &str = "school";

/// The configured location types in hierarchy order, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationTypes {
    types: Vec<String>,
}

/// Why a hierarchy cannot be built from configured types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationTypesError {
    #[error("must list at least one type")]
    Empty,
    #[error("type {0:?} is blank or holds ',' or ';'")]
    Invalid(String),
    #[error("type {0:?} is listed twice")]
    Duplicate(String),
}

impl LocationTypes {
    pub fn new<S: AsRef<str>>(types: &[S]) -> Result<LocationTypes, LocationTypesError> {
        if types.is_empty() {
            return Err(LocationTypesError::Empty);
        }
        let mut normalised: Vec<String> = Vec::with_capacity(types.len());
        for raw in types {
            let name = raw.as_ref().trim().to_lowercase();
            // Sunbird's property uses ',' and ';' as separators, so they cannot be in a name.
            if name.is_empty() || name.contains([',', ';']) {
                return Err(LocationTypesError::Invalid(raw.as_ref().to_string()));
            }
            if normalised.contains(&name) {
                return Err(LocationTypesError::Duplicate(name));
            }
            normalised.push(name);
        }
        Ok(LocationTypes { types: normalised })
    }

    /// The level of a type (0 is the top), matched case-insensitively.
    pub fn level(&self, type_name: &str) -> Option<usize> {
        let wanted = type_name.trim().to_lowercase();
        self.types.iter().position(|t| *t == wanted)
    }

    /// The configured spelling of a type, matched case-insensitively.
    pub fn canonical(&self, type_name: &str) -> Option<&str> {
        self.level(type_name)
            .map(|level| self.types[level].as_str())
    }

    /// The list as Java prints it in Sunbird's `invalidValue` message: `[state, district]`.
    pub fn listed(&self) -> String {
        format!("[{}]", self.types.join(", "))
    }

    /// True when a location of `child_type` may have a parent of `parent_type`: the parent is
    /// exactly one level above, or one or two levels above for a school. Sunbird only rejects a
    /// parent too far above and lets a parent at the same or a lower level through, which
    /// breaks the tree (a district under a block, a state under itself); this rejects both.
    pub fn parent_allowed(&self, child_type: &str, parent_type: &str) -> bool {
        let (Some(child), Some(parent)) = (self.level(child_type), self.level(parent_type)) else {
            return false;
        };
        let reach = if self.types[child] == SKIPPING_TYPE {
            2
        } else {
            1
        };
        parent < child && child - parent <= reach
    }
}

/// The claim value of a location code: codes are unique case-insensitively, as Sunbird's
/// lower-cased `code.raw` term lookup makes them.
pub fn location_code_claim(code: &str) -> String {
    code.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sunbird() -> LocationTypes {
        LocationTypes::new(&["state", "district", "block", "cluster", "school"]).expect("types")
    }

    #[test]
    fn levels_and_names_are_case_insensitive() {
        let types = sunbird();
        assert_eq!(types.level("State"), Some(0));
        assert_eq!(types.level("SCHOOL"), Some(4));
        assert_eq!(types.level("village"), None);
        assert_eq!(types.canonical("DisTrict"), Some("district"));
        assert_eq!(types.listed(), "[state, district, block, cluster, school]");
    }

    #[test]
    fn a_parent_is_one_level_above_or_two_for_a_school() {
        let types = sunbird();
        assert!(types.parent_allowed("district", "state"));
        assert!(types.parent_allowed("block", "district"));
        assert!(!types.parent_allowed("block", "state"), "too far above");
        assert!(types.parent_allowed("school", "cluster"));
        assert!(types.parent_allowed("school", "block"));
        assert!(!types.parent_allowed("school", "district"), "three above");
        assert!(!types.parent_allowed("district", "district"), "same level");
        assert!(!types.parent_allowed("district", "block"), "lower level");
        assert!(!types.parent_allowed("state", "state"));
        assert!(!types.parent_allowed("district", "village"), "unknown type");
    }

    #[test]
    fn bad_type_lists_are_refused() {
        let none: [&str; 0] = [];
        assert_eq!(LocationTypes::new(&none), Err(LocationTypesError::Empty));
        assert!(matches!(
            LocationTypes::new(&["state", " "]),
            Err(LocationTypesError::Invalid(_))
        ));
        assert!(matches!(
            LocationTypes::new(&["state", "a;b"]),
            Err(LocationTypesError::Invalid(_))
        ));
        assert_eq!(
            LocationTypes::new(&["state", "State"]),
            Err(LocationTypesError::Duplicate("state".into()))
        );
    }

    #[test]
    fn codes_claim_lower_cased() {
        assert_eq!(location_code_claim(" KA-01 "), "ka-01");
    }
}
