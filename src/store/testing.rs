//! Fresh PostgreSQL databases for tests: each test that runs on PostgreSQL gets a database of its
//! own on the server `BRIDGE_TEST_POSTGRES_URL` names (tests on PostgreSQL are skipped when it is
//! unset). Databases of earlier runs older than an hour are dropped as new ones are made.

use sqlx::{Connection, Row};

use super::StoreError;

/// The variable naming the server (any database on it; the bridge creates its own next to it).
pub const POSTGRES_URL_VAR: &str = "BRIDGE_TEST_POSTGRES_URL";

const PREFIX: &str = "wbtest_";

/// The server's URL, when tests should run on PostgreSQL too.
pub fn postgres_server() -> Option<String> {
    std::env::var(POSTGRES_URL_VAR).ok().filter(|u| !u.trim().is_empty())
}

/// Creates an empty database on `server` and returns its URL.
pub async fn fresh_postgres_database(server: &str) -> Result<String, StoreError> {
    let mut admin = sqlx::PgConnection::connect(server).await?;
    let now = super::now_ms() / 1000;
    let stale: Vec<String> = sqlx::query("SELECT datname FROM pg_database WHERE datname LIKE 'wbtest\\_%'")
        .fetch_all(&mut admin)
        .await?
        .iter()
        .map(|r| r.get::<String, _>(0))
        .filter(|name| created_at(name).is_some_and(|t| now - t > 3600))
        .collect();
    for name in stale {
        // Another run may be dropping it too; either way it goes.
        // Names are ours (the prefix and digits), never input.
        let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
        let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut admin).await;
    }
    let name = format!("{PREFIX}{now}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut admin).await?;
    admin.close().await?;
    Ok(with_database(server, &name))
}

/// `server` with its database replaced by `name` (query parameters kept).
fn with_database(server: &str, name: &str) -> String {
    let (base, query) = server.split_once('?').map_or((server, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

fn created_at(name: &str) -> Option<i64> {
    name.strip_prefix(PREFIX)?.split('_').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_replaces_the_servers_and_keeps_its_parameters() {
        assert_eq!(with_database("postgres://127.0.0.1:5432/test", "x"), "postgres://127.0.0.1:5432/x");
        assert_eq!(with_database("postgres://u@h/test?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
        assert_eq!(with_database("postgres://h:5432", "x"), "postgres://h:5432/x");
        assert_eq!(created_at("wbtest_1700000000_abc"), Some(1_700_000_000));
    }
}
