//! `fleet-delete-guard audit`: who deleted Fleet-managed objects, from audit logs.

/// Arguments of `fleet-delete-guard audit`.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// Audit log files (plain or gzip); standard input when none.
    pub files: Vec<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("not implemented yet")]
    NotImplemented,
}

/// Run the audit report.
pub fn run(_args: AuditArgs) -> Result<(), AuditError> {
    Err(AuditError::NotImplemented)
}
