//! Jobs of this coordinator that would race each other to a conflict on one table take
//! turns instead, first come first served: every job that reads a table's files to change
//! them (overwrite, replaceWhere, DELETE, UPDATE, MERGE, OPTIMIZE, ANALYZE, ALTER TABLE). Blind
//! appends (they read nothing and, at the default WriteSerializable isolation, conflict with
//! nothing), DESCRIBE and VACUUM (it never deletes a file a job in flight may use) do not
//! wait; jobs on other tables run in parallel. Writers outside this coordinator still meet
//! Delta's conflict rules at commit. Two jobs on one table are taken to overlap whatever
//! partitions they touch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use silt_common::request::{JobRequest, WriteMode};

/// Per table, the turn of the job that holds it.
#[derive(Default)]
pub struct TableTurns {
    tables: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A table's turn; it passes on when dropped.
pub type Turn = tokio::sync::OwnedMutexGuard<()>;

impl TableTurns {
    /// The table's turn lock, made on first use; tables nobody holds or waits for are
    /// forgotten.
    fn lock_of(&self, table: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        tables.retain(|_, l| Arc::strong_count(l) > 1);
        tables.entry(key(table)).or_default().clone()
    }

    /// The table's turn now, if nobody has it.
    pub fn try_take(&self, table: &str) -> Option<Turn> {
        self.lock_of(table).try_lock_owned().ok()
    }

    /// Waits for the table's turn (in the order jobs asked for it).
    pub async fn take(&self, table: &str) -> Turn {
        self.lock_of(table).lock_owned().await
    }
}

/// One key per table, however its location is spelled.
fn key(table: &str) -> String {
    silt_common::storage::parse_location(table)
        .map(|u| u.as_str().trim_end_matches('/').to_string())
        .unwrap_or_else(|_| table.trim_end_matches('/').to_string())
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
        | JobRequest::SetProperties(_) => true,
        JobRequest::Describe(_) | JobRequest::Vacuum(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn turns_are_per_table_and_in_order() {
        let turns = Arc::new(TableTurns::default());
        let first = turns.take("/t/a").await;
        // The same table, spelled otherwise, is busy; another table is not.
        assert!(turns.try_take("file:///t/a/").is_none());
        assert!(turns.try_take("/t/b").is_some());
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..3 {
            let (turns, order) = (turns.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let _turn = turns.take("/t/a").await;
                order.lock().unwrap().push(i);
            }));
            // Each asks after the one before.
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
        assert!(order.lock().unwrap().is_empty(), "all wait for the first");
        drop(first);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
        assert!(turns.try_take("/t/a").is_some(), "free again");
    }
}
