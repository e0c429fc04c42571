//! Statements on SQLite, with the shape of the part of sqlx's API that `queries/` uses
//! (`query(sql).bind(v).execute(on)`, `fetch_one/optional/all`, `row.get(i)`), so both engines
//! compile the same query code. Underneath, rusqlite runs each statement synchronously on a
//! connection that keeps it prepared: inside a group commit a statement is a function call on
//! the writer's thread, not a round trip to a connection thread (sqlx's SQLite driver hands
//! every statement to one and waits for the answer: two thread switches per statement, most of
//! the bridge's CPU under load).

use std::future::Future;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, Value, ValueRef};

use crate::relay::ids::{BridgeMessageId, ContactId, ErrorCode};
use crate::relay::message::{Direction, MessageStatus};

/// A statement and its arguments, owned so that it can run on another thread.
#[must_use = "a query does nothing until it is executed or fetched"]
pub(crate) struct Query {
    sql: &'static str,
    args: Vec<Value>,
    /// The first argument that could not be converted (reported when the query runs).
    bad_arg: Option<rusqlite::Error>,
}

/// `sqlx::query`'s counterpart.
pub(crate) fn query(sql: &'static str) -> Query {
    Query { sql, args: Vec::new(), bad_arg: None }
}

/// What a statement that returns no rows reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Done(u64);

impl Done {
    pub(crate) fn rows_affected(&self) -> u64 {
        self.0
    }
}

/// One result row, its values copied out of the statement.
#[derive(Debug, Clone)]
pub(crate) struct DbRow(Vec<Value>);

/// `sqlx::Row`'s counterpart: a column by index, converted to the type wanted. Like sqlx's `get`,
/// it panics when the column cannot be converted (a mistake in the statement, not in the data).
pub(crate) trait Row {
    fn get<T: FromSql, I: ColumnIndex>(&self, index: I) -> T;
}

/// A column's position (sqlx also takes names; the queries only use positions).
pub(crate) trait ColumnIndex {
    fn position(self) -> usize;
}

impl ColumnIndex for usize {
    fn position(self) -> usize {
        self
    }
}

impl Row for DbRow {
    fn get<T: FromSql, I: ColumnIndex>(&self, index: I) -> T {
        let index = index.position();
        let value = self.0.get(index).unwrap_or_else(|| panic!("no column {index} in a row of {}", self.0.len()));
        T::column_result(value.into()).unwrap_or_else(|e| panic!("column {index}: {e}"))
    }
}

/// Where a statement runs: the writer's connection inside its transaction (`&mut Conn`, at once)
/// or one of the readers (`&Readers`, on a blocking thread).
pub(crate) trait Executor {
    fn run<R, W>(self, work: W) -> impl Future<Output = rusqlite::Result<R>> + Send
    where
        R: Send + 'static,
        W: FnOnce(&rusqlite::Connection) -> rusqlite::Result<R> + Send + 'static;
}

/// The writer's connection, in the group commit's transaction.
#[derive(Debug)]
pub(crate) struct Conn(pub(super) rusqlite::Connection);

impl Executor for &mut Conn {
    fn run<R, W>(self, work: W) -> impl Future<Output = rusqlite::Result<R>> + Send
    where
        R: Send + 'static,
        W: FnOnce(&rusqlite::Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        std::future::ready(work(&self.0))
    }
}

impl Query {
    /// Adds the next argument (`$1`, `$2`, … in the order bound).
    pub(crate) fn bind<T: ToSql>(mut self, value: T) -> Self {
        match value.to_sql() {
            Ok(ToSqlOutput::Borrowed(value)) => match Value::try_from(value) {
                Ok(value) => self.args.push(value),
                Err(e) => {
                    self.bad_arg.get_or_insert(rusqlite::Error::ToSqlConversionFailure(Box::new(e)));
                }
            },
            Ok(ToSqlOutput::Owned(value)) => self.args.push(value),
            Ok(_) => {
                self.bad_arg.get_or_insert(rusqlite::Error::ToSqlConversionFailure("unsupported argument kind".into()));
            }
            Err(e) => {
                self.bad_arg.get_or_insert(e);
            }
        }
        self
    }

    /// Runs the statement; how many rows it changed.
    pub(crate) fn execute(self, on: impl Executor) -> impl Future<Output = rusqlite::Result<Done>> + Send {
        on.run(move |conn| {
            let mut statement = self.prepare(conn)?;
            let mut rows = statement.raw_query();
            while rows.next()?.is_some() {}
            Ok(Done(conn.changes()))
        })
    }

    /// Every row the statement returns.
    pub(crate) fn fetch_all(self, on: impl Executor) -> impl Future<Output = rusqlite::Result<Vec<DbRow>>> + Send {
        on.run(move |conn| self.rows(conn, usize::MAX))
    }

    /// The first row, if any.
    pub(crate) fn fetch_optional(self, on: impl Executor) -> impl Future<Output = rusqlite::Result<Option<DbRow>>> + Send {
        on.run(move |conn| Ok(self.rows(conn, 1)?.pop()))
    }

    /// The first row; an error when there is none.
    pub(crate) fn fetch_one(self, on: impl Executor) -> impl Future<Output = rusqlite::Result<DbRow>> + Send {
        on.run(move |conn| self.rows(conn, 1)?.pop().ok_or(rusqlite::Error::QueryReturnedNoRows))
    }

    fn rows(self, conn: &rusqlite::Connection, limit: usize) -> rusqlite::Result<Vec<DbRow>> {
        let mut statement = self.prepare(conn)?;
        let columns = statement.column_count();
        let mut rows = statement.raw_query();
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(row) = rows.next()? else { break };
            let values = (0..columns)
                .map(|i| {
                    let value = row.get_ref(i)?;
                    Value::try_from(value)
                        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, value.data_type(), Box::new(e)))
                })
                .collect::<rusqlite::Result<_>>()?;
            out.push(DbRow(values));
        }
        Ok(out)
    }

    /// The connection's prepared statement with the arguments bound. `$N` names argument N
    /// wherever it appears (SQLite numbers named parameters by first appearance instead).
    fn prepare(self, conn: &rusqlite::Connection) -> rusqlite::Result<rusqlite::CachedStatement<'_>> {
        if let Some(e) = self.bad_arg {
            return Err(e);
        }
        let mut statement = conn.prepare_cached(self.sql)?;
        for position in 1..=statement.parameter_count() {
            let number = statement.parameter_name(position).and_then(|name| name[1..].parse::<usize>().ok()).unwrap_or(position);
            let value = self.args.get(number - 1).ok_or(rusqlite::Error::InvalidParameterCount(number, self.args.len()))?;
            statement.raw_bind_parameter(position, value)?;
        }
        Ok(statement)
    }
}

/// The bridge's own types, stored as sqlx stores them (`#[sqlx(transparent)]`, lower-case text).
macro_rules! text_newtype {
    ($($t:ty => $make:expr),*) => {$(
        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::Borrowed(ValueRef::Text(self.as_str().as_bytes())))
            }
        }
        impl FromSql for $t {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value.as_str().and_then($make)
            }
        }
    )*};
}

text_newtype! {
    BridgeMessageId => |s| Ok(BridgeMessageId::from_raw(s)),
    ErrorCode => |s| Ok(ErrorCode::new(s)),
    Direction => |s| match s {
        "inbound" => Ok(Direction::Inbound),
        "outbound" => Ok(Direction::Outbound),
        _ => Err(FromSqlError::InvalidType),
    },
    MessageStatus => |s| match s {
        "stored" => Ok(MessageStatus::Stored),
        "delivered" => Ok(MessageStatus::Delivered),
        "failed" => Ok(MessageStatus::Failed),
        _ => Err(FromSqlError::InvalidType),
    }
}

impl ToSql for ContactId {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

impl FromSql for ContactId {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        i64::column_result(value).map(ContactId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Conn {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, dir TEXT)").unwrap();
        Conn(conn)
    }

    async fn insert(conn: &mut Conn, name: &str, dir: Direction) -> u64 {
        query("INSERT INTO t (name, dir) VALUES ($1, $2)").bind(name).bind(dir).execute(&mut *conn).await.unwrap().rows_affected()
    }

    /// `$N` is argument N wherever it appears, also when a later one is named first.
    #[tokio::test]
    async fn numbered_arguments_bind_by_number_not_by_appearance() {
        let mut conn = conn();
        assert_eq!(insert(&mut conn, "a", Direction::Inbound).await, 1);
        let row = query("SELECT $2 || ':' || $1 || ':' || $2").bind("one").bind("two").fetch_one(&mut conn).await.unwrap();
        assert_eq!(row.get::<String, _>(0), "two:one:two");
        let found = query("SELECT name, dir FROM t WHERE dir = $2 AND name = $1")
            .bind("a")
            .bind(Direction::Inbound)
            .fetch_optional(&mut conn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((found.get::<String, _>(0), found.get::<Direction, _>(1)), ("a".to_string(), Direction::Inbound));
    }

    /// A missing argument is an error, not a NULL; no row is an error only for `fetch_one`.
    #[tokio::test]
    async fn a_missing_argument_or_row_is_an_error() {
        let mut conn = conn();
        assert!(query("SELECT $1, $2").bind(1i64).fetch_one(&mut conn).await.is_err());
        assert!(query("SELECT name FROM t WHERE id = $1").bind(9i64).fetch_optional(&mut conn).await.unwrap().is_none());
        assert!(matches!(
            query("SELECT name FROM t WHERE id = $1").bind(9i64).fetch_one(&mut conn).await,
            Err(rusqlite::Error::QueryReturnedNoRows)
        ));
    }

    /// The bridge's types round-trip as the text and integers sqlx stored.
    #[tokio::test]
    async fn ids_and_enums_are_stored_as_before() {
        let mut conn = conn();
        let id = BridgeMessageId::generate();
        let row = query("SELECT $1, $2, $3, $4, typeof($2)")
            .bind(&id)
            .bind(ContactId(7))
            .bind(MessageStatus::Delivered)
            .bind(None::<ErrorCode>)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(row.get::<BridgeMessageId, _>(0), id);
        assert_eq!(row.get::<ContactId, _>(1), ContactId(7));
        assert_eq!(row.get::<MessageStatus, _>(2), MessageStatus::Delivered);
        assert_eq!(row.get::<Option<ErrorCode>, _>(3), None);
        assert_eq!(row.get::<String, _>(4), "integer");
    }
}
