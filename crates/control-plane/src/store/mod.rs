//! sqlx functions, one file per aggregate. Functions take a pool or a transaction.

pub mod apps;
pub mod audit;
pub mod domains;
pub mod jobs;
pub mod key_usage;
pub mod routes;
pub mod users;
pub mod workers;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Conflict(String),
    #[error("cannot seal a value: {0}")]
    Seal(#[from] wisehosting_crypto::SealError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// True when the error is a unique-constraint violation.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}
