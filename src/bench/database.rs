//! The bridge's database during a run, and its size.
//!
//! - No URL: a fresh SQLite file in a temporary directory.
//! - `sqlite://PATH`: that file (start from an empty one).
//! - `postgres://…`: a **fresh database created on that server for the run**
//!   ([`fresh_postgres_database`]), so every run starts empty and several bridge processes can
//!   share it; dropped at the end of the run (one a failed run left behind is dropped an hour
//!   later, when the next fresh database is made on that server). The URL's user needs the right
//!   to create databases.
//!
//! Sizes: SQLite's file plus its write-ahead log; PostgreSQL's `pg_database_size` (the
//! database's files: tables, indexes, TOAST; not the server-wide write-ahead log).

use std::path::PathBuf;
use std::str::FromStr as _;

use sqlx::{ConnectOptions as _, Connection as _};

use crate::store::StoreError;
use crate::store::testing::fresh_postgres_database;

/// Which engine holds the bridge's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

impl Kind {
    /// The engine a `--database-url` names (none: SQLite).
    pub fn of(url: Option<&str>) -> Result<Self, DatabaseError> {
        match url {
            None => Ok(Kind::Sqlite),
            Some(url) if url.starts_with("sqlite:") => Ok(Kind::Sqlite),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Ok(Kind::Postgres),
            Some(_) => Err(DatabaseError::UnsupportedUrl),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "postgres",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("--database-url must be sqlite://PATH or postgres://…")]
    UnsupportedUrl,
    #[error("cannot create a temporary directory for the SQLite file")]
    TempDir(#[source] std::io::Error),
    #[error("cannot create a fresh database on the PostgreSQL server")]
    Create(#[source] StoreError),
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// The database the bridges of a run share.
pub struct Database {
    /// What the bridges are given.
    pub url: String,
    pub kind: Kind,
    /// The kind and where it came from, never the URL (it may hold credentials).
    pub description: String,
    sqlite_file: Option<PathBuf>,
    /// The server the run's fresh PostgreSQL database was created on, to drop it at the end.
    postgres_server: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Database {
    pub async fn prepare(url: Option<&str>) -> Result<Self, DatabaseError> {
        let kind = Kind::of(url)?;
        let db = |url: String, description: &str| Self {
            url,
            kind,
            description: description.into(),
            sqlite_file: None,
            postgres_server: None,
            _dir: None,
        };
        Ok(match url {
            None => {
                let dir = tempfile::Builder::new().prefix("wechat-bridge-bench-").tempdir().map_err(DatabaseError::TempDir)?;
                let file = dir.path().join("bench.db");
                let url = format!("sqlite://{}", file.display());
                Self { sqlite_file: Some(file), _dir: Some(dir), ..db(url, "sqlite (fresh temporary file)") }
            }
            Some(url) if kind == Kind::Sqlite => {
                let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
                let path = path.split('?').next().unwrap_or_default();
                let file = (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path));
                Self { sqlite_file: file, ..db(url.to_string(), "sqlite") }
            }
            Some(server) => {
                let url = fresh_postgres_database(server).await.map_err(DatabaseError::Create)?;
                Self { postgres_server: Some(server.to_string()), ..db(url, "postgres (fresh database)") }
            }
        })
    }

    /// After the bridges stopped: moves SQLite's write-ahead log into the file and empties it, so
    /// the file's size is the data's (a log keeps its largest size until truncated).
    pub async fn checkpoint(&self) -> Result<(), DatabaseError> {
        if self.sqlite_file.is_none() {
            return Ok(());
        }
        let mut conn = sqlx::sqlite::SqliteConnectOptions::from_str(&self.url)?.connect().await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn).await?;
        conn.close().await?;
        Ok(())
    }

    /// Bytes the data takes now: SQLite's file and write-ahead log (none for an in-memory
    /// database or a file not yet created), PostgreSQL's `pg_database_size`.
    pub async fn size(&self) -> Result<Option<u64>, DatabaseError> {
        match self.kind {
            Kind::Sqlite => {
                let Some(file) = &self.sqlite_file else { return Ok(None) };
                let len = |p: PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
                Ok(Some(len(file.clone()) + len(PathBuf::from(format!("{}-wal", file.display())))))
            }
            Kind::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await?;
                let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())").fetch_one(&mut conn).await?;
                conn.close().await?;
                Ok(Some(bytes.max(0) as u64))
            }
        }
    }

    /// Drops the run's fresh PostgreSQL database (nothing for SQLite: the temporary directory
    /// goes with `self`).
    pub async fn remove(self) -> Result<(), DatabaseError> {
        let Some(server) = &self.postgres_server else { return Ok(()) };
        let options = sqlx::postgres::PgConnectOptions::from_str(&self.url)?;
        let Some(name) = options.get_database() else { return Ok(()) };
        // Dropping waits for a checkpoint: seconds are normal, not worth sqlx's slow-statement log.
        let mut admin = sqlx::postgres::PgConnectOptions::from_str(server)?.disable_statement_logging().connect().await?;
        // The name is the one `fresh_postgres_database` made (a prefix and digits), never input.
        let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
        sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut admin).await?;
        admin.close().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_comes_from_the_url() {
        assert_eq!(Kind::of(None).unwrap(), Kind::Sqlite);
        assert_eq!(Kind::of(Some("sqlite:///tmp/bench.db")).unwrap(), Kind::Sqlite);
        assert_eq!(Kind::of(Some("postgres://postgres@127.0.0.1:5432/postgres")).unwrap(), Kind::Postgres);
        assert_eq!(Kind::of(Some("postgresql://h/db")).unwrap(), Kind::Postgres);
        assert!(matches!(Kind::of(Some("mysql://h/db")), Err(DatabaseError::UnsupportedUrl)));
    }

    #[tokio::test]
    async fn a_fresh_sqlite_file_is_measured_with_its_log() {
        let db = Database::prepare(None).await.unwrap();
        assert_eq!(db.kind, Kind::Sqlite);
        assert!(!db.description.contains("://"));
        assert_eq!(db.size().await.unwrap(), Some(0), "no file before the bridge starts");
        let file = db.sqlite_file.clone().unwrap();
        std::fs::write(&file, [0; 4096]).unwrap();
        std::fs::write(format!("{}-wal", file.display()), [0; 1024]).unwrap();
        assert_eq!(db.size().await.unwrap(), Some(5120));
        db.remove().await.unwrap();
    }
}
