//! Fuzzing of what the coordinator takes from others (proptest; bounded case counts, so the
//! whole module runs in seconds in every test run; `PROPTEST_CASES` raises them): protobuf
//! messages from clients and executors, decoded and converted to domain types; task reports
//! checked against the task dispatched; SQL statements and predicates parsed. None may panic,
//! and a report that passes validation only names files inside its attempt's own prefix.

use std::collections::BTreeMap;

use proptest::prelude::*;
use prost::Message;
use silt_common::task::{DataFile, DeletionVector, Input, Sink, Task};
use silt_common::task::{TaskOutput, attempt_data_prefix};
use silt_proto::pb;

use crate::report::tests::{TAG, file, partitioned, spec};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(cases),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Valid encodings of the messages peers send, to mutate.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let statements = [
        "DELETE FROM delta.`/t` WHERE id > 3 AND s = 'x'",
        "UPDATE delta.`/t` SET f = f * 2, s = 'y' WHERE k IN (1, 2)",
        "MERGE INTO delta.`/t` AS t USING delta.`/s` AS s ON t.id = s.id \
         WHEN MATCHED AND s.op = 'd' THEN DELETE WHEN MATCHED THEN UPDATE SET * \
         WHEN NOT MATCHED THEN INSERT *",
        "OPTIMIZE delta.`/t` WHERE k = 1 ZORDER BY (a, b)",
        "VACUUM delta.`/t` RETAIN 200 HOURS",
        "ALTER TABLE delta.`/t` SET TBLPROPERTIES ('delta.appendOnly' = 'true')",
    ];
    let mut out: Vec<(&'static str, Vec<u8>)> = statements
        .iter()
        .flat_map(|s| silt_common::sql::parse(s).expect("a valid statement"))
        .map(|req| ("submit", pb::SubmitJobRequest::from(&req).encode_to_vec()))
        .collect();
    let output = pb::TaskOutput::from(&output(vec![file(&format!(
        "k=1/{}-00000.parquet",
        attempt_data_prefix("part-j1", TAG)
    ))]));
    out.push((
        "report",
        pb::TaskReport {
            executor_id: "exec-1".into(),
            key: Some(pb::TaskKey {
                job_id: "j1".into(),
                stage: 0,
                index: 3,
                attempt: 1,
            }),
            epoch: 2,
            outcome: Some(pb::task_report::Outcome::Success(output)),
        }
        .encode_to_vec(),
    ));
    out.push((
        "register",
        pb::RegisterRequest {
            protocol_version: silt_proto::PROTOCOL_VERSION,
            host: "h".into(),
            slots: 2,
            memory_limit_bytes: 1 << 30,
            shuffle_address: "127.0.0.1:7000".into(),
        }
        .encode_to_vec(),
    ));
    out.push((
        "task",
        pb::TaskSpec::from(&silt_common::task::TaskSpec {
            job_id: "j1".into(),
            stage: 0,
            index: 3,
            attempt: 1,
            epoch: 2,
            snapshot_version: 0,
            task: task(),
        })
        .encode_to_vec(),
    ));
    out
}

/// Decodes `bytes` as the message `kind` names and converts it as the receiving side does.
fn decode(kind: &str, bytes: &[u8]) {
    match kind {
        "submit" => {
            if let Ok(m) = pb::SubmitJobRequest::decode(bytes) {
                let _ = silt_common::request::JobRequest::try_from(m);
            }
        }
        "report" => {
            if let Ok(m) = pb::TaskReport::decode(bytes)
                && let Some(pb::task_report::Outcome::Success(o)) = m.outcome
            {
                let out = TaskOutput::from(o);
                let _ = crate::report::validate(&task(), TAG, &out);
            }
        }
        "register" => {
            let _ = pb::RegisterRequest::decode(bytes);
        }
        _ => {
            if let Ok(m) = pb::TaskSpec::decode(bytes) {
                let _ = silt_common::task::TaskSpec::try_from(m);
            }
        }
    }
}

/// The task of the reports: a write of table files into a table partitioned by `k`.
fn task() -> Task {
    partitioned(
        &["k"],
        Input::TableFiles {
            files: vec![file("k=1/given.parquet")],
            touch: None,
            row_ids: None,
        },
        Sink::DataFiles(spec(false)),
    )
}

fn output(adds: Vec<DataFile>) -> TaskOutput {
    TaskOutput {
        adds,
        ..Default::default()
    }
}

/// Path segments an attacker would try, and some that are fine.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just(String::new()),
        Just("%2e%2e".to_string()),
        Just("%2E.".to_string()),
        Just("k=1".to_string()),
        Just("k=%2F".to_string()),
        Just("_delta_log".to_string()),
        Just("_change_data".to_string()),
        Just("s3:".to_string()),
        Just("C:".to_string()),
        Just(format!("{}-0.parquet", attempt_data_prefix("part-j1", TAG))),
        Just(format!("{}-0.parquet", attempt_data_prefix("part-j2", TAG))),
        Just("part-j1-s0-t3-a0-0.parquet".to_string()),
        "[a-z=%._/-]{0,12}",
        "\\PC{0,8}",
    ]
}

fn data_file() -> impl Strategy<Value = DataFile> {
    (
        prop::collection::vec(segment(), 1..5),
        any::<bool>(),
        any::<i64>(),
        prop_oneof![Just(-1i64), Just(0), Just(5), any::<i64>()],
        prop_oneof![
            Just(None),
            Just(Some(r#"{"numRecords":5}"#.to_string())),
            Just(Some("{".to_string())),
            Just(Some("[]".to_string())),
            Just(Some(r#"{"numRecords":"5"}"#.to_string())),
            "\\PC{0,20}".prop_map(Some),
        ],
        any::<bool>(),
    )
        .prop_map(|(segments, slash, size, rows, stats, dv)| DataFile {
            path: format!("{}{}", if slash { "/" } else { "" }, segments.join("/")),
            partition_values: BTreeMap::new(),
            size_bytes: size,
            modification_time_ms: 0,
            stats_json: stats,
            num_records: rows,
            deletion_vector: dv.then(|| DeletionVector {
                storage_type: "u".into(),
                path_or_inline_dv: "../../x".into(),
                offset: None,
                size_in_bytes: 1,
                cardinality: 1,
            }),
        })
}

/// Tokens of the SQL silt takes, and some it must refuse.
fn sql_token() -> impl Strategy<Value = String> {
    let words = [
        "DELETE",
        "FROM",
        "UPDATE",
        "SET",
        "WHERE",
        "MERGE",
        "INTO",
        "USING",
        "ON",
        "WHEN",
        "MATCHED",
        "NOT",
        "THEN",
        "INSERT",
        "VALUES",
        "*",
        "OPTIMIZE",
        "ZORDER",
        "BY",
        "VACUUM",
        "RETAIN",
        "HOURS",
        "DRY",
        "RUN",
        "ALTER",
        "TABLE",
        "TBLPROPERTIES",
        "DESCRIBE",
        "HISTORY",
        "DETAIL",
        "ANALYZE",
        "COMPUTE",
        "STATISTICS",
        "AS",
        "AND",
        "OR",
        "IN",
        "IS",
        "NULL",
        "delta.`/t`",
        "delta.`s3://b/t`",
        "delta.`",
        "`",
        "'",
        "\"",
        "(",
        ")",
        ",",
        ";",
        "=",
        "<>",
        "+",
        "-",
        "/",
        "%",
        ".",
        "id",
        "t.id",
        "s.id",
        "k",
        "1",
        "-1",
        "1e308",
        "'x'",
        "''",
        "--",
        "/*",
        "*/",
        "\u{0}",
        "ü",
        "CAST(",
        "TIMESTAMP",
        "'2024-01-01'",
        "[",
        "]",
        "{",
        "}",
        "VERSION",
        "AS OF",
        "INTERVAL",
        "CASE",
        "END",
    ];
    prop_oneof![
        4 => prop::sample::select(words.to_vec()).prop_map(str::to_string),
        1 => "\\PC{0,6}",
    ]
}

/// A predicate's tokens over the columns of [`schema`].
fn predicate_token() -> impl Strategy<Value = String> {
    let words = [
        "id",
        "s",
        "f",
        "d",
        "k",
        "=",
        "<",
        ">=",
        "<>",
        "AND",
        "OR",
        "NOT",
        "IN",
        "(",
        ")",
        ",",
        "IS",
        "NULL",
        "LIKE",
        "'a%'",
        "1",
        "2.5",
        "-3",
        "'x'",
        "+",
        "*",
        "/",
        "%",
        "CAST(",
        "AS",
        "INT)",
        "BETWEEN",
        "TRUE",
        "FALSE",
        "no_such",
        "abs(",
        "coalesce(",
        "DATE",
        "'2024-01-01'",
        "CASE",
        "WHEN",
        "THEN",
        "ELSE",
        "END",
        "9223372036854775807",
        "1/0",
    ];
    prop::sample::select(words.to_vec()).prop_map(str::to_string)
}

fn schema() -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    std::sync::Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("s", DataType::Utf8, true),
        Field::new("f", DataType::Float64, true),
        Field::new("d", DataType::Date32, true),
        Field::new("k", DataType::Int32, true),
    ]))
}

proptest! {
    #![proptest_config(config(1500))]

    /// Mutated messages (bytes flipped, cut, inserted) decode or fail, never panic.
    #[test]
    fn mutated_messages_never_panic(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..12),
    ) {
        let seeds = seeds();
        let (kind, seed) = &seeds[which.index(seeds.len())];
        let mut bytes = seed.clone();
        for (at, byte, how) in edits {
            let i = at.index(bytes.len().max(1));
            match how {
                0 if !bytes.is_empty() => bytes[i] = byte,
                1 => bytes.insert(i.min(bytes.len()), byte),
                _ => bytes.truncate(i),
            }
        }
        decode(kind, &bytes);
    }

    /// Arbitrary bytes too.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for kind in ["submit", "report", "register", "task"] {
            decode(kind, &bytes);
        }
    }

    /// A report passes validation only if every file it adds lies under the table, inside
    /// a partition directory, with the attempt's own name.
    #[test]
    fn accepted_reports_name_only_the_attempts_own_files(
        adds in prop::collection::vec(data_file(), 1..4),
    ) {
        let out = output(adds);
        if crate::report::validate(&task(), TAG, &out).is_ok() {
            let prefix = attempt_data_prefix("part-j1", TAG);
            for f in &out.adds {
                let decoded = percent_encoding::percent_decode_str(&f.path).decode_utf8_lossy();
                let parts: Vec<&str> = decoded.split('/').collect();
                prop_assert_eq!(parts.len(), 2, "{}", f.path);
                prop_assert!(parts[0].starts_with("k="), "{}", f.path);
                prop_assert!(parts[1].starts_with(&prefix), "{}", f.path);
                prop_assert!(!parts.iter().any(|p| *p == ".." || *p == "."), "{}", f.path);
                prop_assert!(f.deletion_vector.is_none(), "{}", f.path);
                prop_assert!(f.num_records >= 0 && f.size_bytes > 0, "{}", f.path);
            }
        }
    }

    /// SQL text (token soup and arbitrary text) parses or fails with an error, never panics.
    #[test]
    fn sql_never_panics(tokens in prop::collection::vec(sql_token(), 0..40)) {
        let _ = silt_common::sql::parse(&tokens.join(" "));
        let _ = silt_common::sql::parse(&tokens.concat());
    }

    #[test]
    fn predicates_never_panic(tokens in prop::collection::vec(predicate_token(), 0..16)) {
        let _ = silt_common::expr::Predicate::compile(&tokens.join(" "), &schema());
    }
}

/// Deep nesting is an error, not a stack overflow.
#[test]
fn deeply_nested_text_is_an_error() {
    for depth in [100, 10_000] {
        let nested = format!("{}1{}", "(".repeat(depth), ")".repeat(depth));
        let sql = format!("DELETE FROM delta.`/t` WHERE id = {nested}");
        assert!(silt_common::sql::parse(&sql).is_err(), "depth {depth}");
        let _ = silt_common::expr::Predicate::compile(&format!("id = {nested}"), &schema());
    }
}

/// The messages mutated above are valid to begin with (a mutation starts from something
/// the coordinator accepts): each decodes and converts, and the report passes validation.
#[test]
fn the_seed_messages_are_valid() {
    for (kind, bytes) in seeds() {
        match kind {
            "submit" => {
                let m = pb::SubmitJobRequest::decode(&bytes[..]).unwrap();
                silt_common::request::JobRequest::try_from(m).unwrap();
            }
            "report" => {
                let m = pb::TaskReport::decode(&bytes[..]).unwrap();
                let Some(pb::task_report::Outcome::Success(o)) = m.outcome else {
                    panic!("a successful report");
                };
                assert_eq!(
                    crate::report::validate(&task(), TAG, &TaskOutput::from(o)),
                    Ok(())
                );
            }
            "register" => {
                pb::RegisterRequest::decode(&bytes[..]).unwrap();
            }
            _ => {
                let m = pb::TaskSpec::decode(&bytes[..]).unwrap();
                silt_common::task::TaskSpec::try_from(m).unwrap();
            }
        }
    }
}
