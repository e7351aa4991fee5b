//! Every metric lanehub exports, declared in one place; dashboards use only these names.

/// `lanehub_build_info{version}`: always 1.
pub const BUILD_INFO: &str = "lanehub_build_info";
