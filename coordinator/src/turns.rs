//! Jobs of this coordinator that would race each other to a conflict on one table take
//! turns instead, first come first served: every job that reads a table's files to change
//! them (overwrite, replaceWhere, DELETE, UPDATE, MERGE, OPTIMIZE, ANALYZE, ALTER TABLE) waits
//! for the jobs before it on the table whose [`Footprint`]s overlap its own. A predicate that
//! pins a partition column to values (`k = 1`, `k IN (1, 2)`, in a conjunction) confines a
//! job to those partitions, so jobs on disjoint partitions run side by side; anything else
//! counts as the whole table. Blind appends (they read nothing and, at the default
//! WriteSerializable isolation, conflict with nothing), DESCRIBE and VACUUM (it never
//! deletes a file a job in flight may use) do not wait; jobs on other tables run in
//! parallel. Writers outside this coordinator still meet Delta's conflict rules at commit.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, Value};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use silt_common::request::{JobRequest, WriteMode};
use tokio::sync::Notify;

/// The part of a table a job changes, as far as is known before planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Footprint {
    /// The whole table (or not known better).
    Table,
    /// Only the partitions where `column` (lower case) takes one of `values`.
    Partitions {
        column: String,
        values: BTreeSet<String>,
    },
}

impl Footprint {
    /// Whether two jobs with these footprints may touch the same files.
    pub fn overlaps(&self, other: &Footprint) -> bool {
        match (self, other) {
            (
                Footprint::Partitions { column, values },
                Footprint::Partitions {
                    column: c,
                    values: v,
                },
            ) if column == c => values.iter().any(|a| v.iter().any(|b| same_value(a, b))),
            _ => true,
        }
    }
}

/// Literals that may name the same partition value (`1` and `'1'`, `1` and `1.0`).
fn same_value(a: &str, b: &str) -> bool {
    a == b || matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if x == y)
}

/// The footprint of a job whose rows are those matching `predicate`, on a table whose
/// partition columns (lower case) `partitioned` tells. Called with every column counting
/// as one, it says whether the predicate pins any column at all (and so whether the table's
/// partition columns are worth loading).
pub fn footprint(predicate: Option<&str>, partitioned: &dyn Fn(&str) -> bool) -> Footprint {
    let Some(predicate) = predicate else {
        return Footprint::Table;
    };
    let expr = Parser::new(&GenericDialect)
        .try_with_sql(predicate)
        .and_then(|mut p| p.parse_expr());
    match expr {
        Ok(e) => narrowest(&e, partitioned).unwrap_or(Footprint::Table),
        Err(_) => Footprint::Table,
    }
}

/// The partitions a conjunction pins, if any of its terms pins a partition column.
fn narrowest(expr: &Expr, partitioned: &dyn Fn(&str) -> bool) -> Option<Footprint> {
    let column = |e: &Expr| {
        match e {
            Expr::Identifier(i) => Some(i.value.to_lowercase()),
            Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.to_lowercase()),
            _ => None,
        }
        .filter(|c| partitioned(c))
    };
    let literal = |e: &Expr| match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            Value::Number(n, _) => Some(n.to_string()),
            Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        },
        _ => None,
    };
    match expr {
        Expr::Nested(inner) => narrowest(inner, partitioned),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => narrowest(left, partitioned).or_else(|| narrowest(right, partitioned)),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            let (c, v) = match (column(left), literal(right)) {
                (Some(c), Some(v)) => (c, v),
                _ => (column(right)?, literal(left)?),
            };
            Some(Footprint::Partitions {
                column: c,
                values: BTreeSet::from([v]),
            })
        }
        Expr::InList {
            expr,
            list,
            negated: false,
        } => Some(Footprint::Partitions {
            column: column(expr)?,
            values: list.iter().map(literal).collect::<Option<BTreeSet<_>>>()?,
        }),
        _ => None,
    }
}

/// The predicate that confines a job's changes, if its request has one.
pub fn predicate(req: &JobRequest) -> Option<&str> {
    match req {
        JobRequest::Write(w) => w.replace_where.as_deref(),
        JobRequest::Delete(d) => d.predicate.as_deref(),
        JobRequest::Update(u) => u.predicate.as_deref(),
        JobRequest::Optimize(o) => o.predicate.as_deref(),
        _ => None,
    }
}

/// Whether a job takes a turn on its table (see the module's documentation).
pub fn takes_turn(req: &JobRequest) -> bool {
    match req {
        JobRequest::Write(w) => {
            !(w.mode == WriteMode::Append && w.replace_where.is_none() && !w.merge_schema)
        }
        JobRequest::Delete(_)
        | JobRequest::Update(_)
        | JobRequest::Merge(_)
        | JobRequest::Optimize(_)
        | JobRequest::Analyze(_)
        | JobRequest::AlterTable(_) => true,
        JobRequest::Describe(_) | JobRequest::Vacuum(_) => false,
    }
}

/// Per table, the jobs holding or waiting for a turn, in the order they came.
#[derive(Default)]
pub struct TableTurns {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    tables: Mutex<HashMap<String, Vec<(u64, Footprint)>>>,
    next: std::sync::atomic::AtomicU64,
    changed: Notify,
}

/// A job's place in a table's line; leaving it (drop) lets those behind move on.
pub struct Turn {
    inner: Arc<Inner>,
    table: String,
    ticket: u64,
}

impl TableTurns {
    /// Joins the table's line with `footprint`.
    pub fn join(&self, table: &str, footprint: Footprint) -> Turn {
        let ticket = self
            .inner
            .next
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let table = key(table);
        self.inner
            .tables
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(table.clone())
            .or_default()
            .push((ticket, footprint));
        Turn {
            inner: self.inner.clone(),
            table,
            ticket,
        }
    }
}

impl Turn {
    /// Whether no job before this one on the table overlaps it.
    pub fn is_ready(&self) -> bool {
        let tables = self.inner.tables.lock().unwrap_or_else(|p| p.into_inner());
        let Some(line) = tables.get(&self.table) else {
            return true;
        };
        let Some(mine) = line.iter().find(|(t, _)| *t == self.ticket).map(|(_, f)| f) else {
            return true;
        };
        !line
            .iter()
            .take_while(|(t, _)| *t != self.ticket)
            .any(|(_, f)| f.overlaps(mine))
    }

    /// Waits until this job's turn comes.
    pub async fn ready(&self) {
        loop {
            let changed = self.inner.changed.notified();
            if self.is_ready() {
                return;
            }
            changed.await;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut tables = self.inner.tables.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(line) = tables.get_mut(&self.table) {
            line.retain(|(t, _)| *t != self.ticket);
            if line.is_empty() {
                tables.remove(&self.table);
            }
        }
        drop(tables);
        self.inner.changed.notify_waiters();
    }
}

/// One key per table, however its location is spelled.
fn key(table: &str) -> String {
    silt_common::storage::parse_location(table)
        .map(|u| u.as_str().trim_end_matches('/').to_string())
        .unwrap_or_else(|_| table.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(column: &str, values: &[&str]) -> Footprint {
        Footprint::Partitions {
            column: column.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn predicates_pinning_partition_columns_confine_a_job() {
        let by_k = |c: &str| c == "k";
        assert_eq!(footprint(Some("k = 1"), &by_k), parts("k", &["1"]));
        assert_eq!(
            footprint(Some("'a' = K AND id > 3"), &by_k),
            parts("k", &["a"])
        );
        assert_eq!(
            footprint(Some("id > 3 AND (k IN (1, 2))"), &by_k),
            parts("k", &["1", "2"])
        );
        // Not a partition column, a disjunction, a range, a negation, nothing: the table.
        assert_eq!(footprint(Some("id = 1"), &by_k), Footprint::Table);
        assert_eq!(footprint(Some("k = 1 OR k = 2"), &by_k), Footprint::Table);
        assert_eq!(footprint(Some("k > 1"), &by_k), Footprint::Table);
        assert_eq!(footprint(Some("k NOT IN (1)"), &by_k), Footprint::Table);
        assert_eq!(footprint(None, &by_k), Footprint::Table);
        assert_eq!(footprint(Some("k = "), &by_k), Footprint::Table);
        // Overlap: same column and a common value (however spelled); anything else on
        // the whole table overlaps everything.
        assert!(!parts("k", &["1"]).overlaps(&parts("k", &["2", "3"])));
        assert!(parts("k", &["1"]).overlaps(&parts("k", &["1.0"])));
        assert!(parts("k", &["1"]).overlaps(&parts("d", &["1"])));
        assert!(parts("k", &["1"]).overlaps(&Footprint::Table));
        // Any column counting: whether a predicate pins one at all.
        assert_eq!(footprint(Some("id = 1"), &|_| true), parts("id", &["1"]));
        assert_eq!(footprint(Some("id % 3 = 0"), &|_| true), Footprint::Table);
    }

    #[tokio::test]
    async fn turns_are_per_table_in_order_and_disjoint_partitions_share_one() {
        let turns = TableTurns::default();
        let first = turns.join("/t/a", parts("k", &["1"]));
        assert!(first.is_ready());
        // The same table, spelled otherwise, and an overlapping footprint: waits.
        let second = turns.join("file:///t/a/", Footprint::Table);
        assert!(!second.is_ready());
        // Disjoint partitions go ahead — unless an overlapping job came before.
        let beside = turns.join("/t/a", parts("k", &["2"]));
        assert!(
            !beside.is_ready(),
            "behind the whole-table job, which overlaps it"
        );
        let other = turns.join("/t/b", Footprint::Table);
        assert!(other.is_ready(), "another table");
        let waiting = tokio::spawn(async move {
            second.ready().await;
            second
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        let second = waiting.await.unwrap();
        assert!(second.is_ready());
        drop(second);
        assert!(beside.is_ready());
        let third = turns.join("/t/a", parts("k", &["3"]));
        assert!(third.is_ready(), "disjoint from the one before");
    }
}
