//! Row tracking (`delta.enableRowTracking`): every file a commit adds gets fresh row ids past
//! the high-water mark and its commit's version, the mark is recorded in the
//! `delta.rowTracking` domain, removes and re-added files keep their ids, across checkpoints
//! and racing writers — checked by replaying the log against the protocol's writer rules
//! (`row-tracking-check`); the content stays what delta-rs gives on a plain copy, and
//! delta-rs, polars and DuckDB read it.

use std::path::Path;

use serde_json::Value;

use crate::dv::{DmlPair, RandomDml, random_dml_step};
use crate::merge::Rng;
use crate::support::*;

/// The log checked against row tracking's writer rules; panics naming the problems.
fn assert_row_ids(what: &str, table: &Path) -> Value {
    let check = oracle_ok(&["row-tracking-check", "--table", &s(table)]).json();
    assert_eq!(
        check["problems"],
        Value::Array(vec![]),
        "[{what}] row tracking: {check}"
    );
    check
}

/// Random appends, DELETEs, UPDATEs and MERGEs (copy-on-write and deletion vectors) on a
/// table tracking rows (silt) and the same on a plain copy (delta-rs): the same content
/// after every step, and the log keeps row tracking's rules throughout (twelve steps cross
/// the checkpoint at version 10).
#[test]
fn random_dml_on_row_tracking_tables_keeps_row_ids_unique() {
    let seed = seed_for("random_dml_on_row_tracking_tables_keeps_row_ids_unique");
    let steps = env_count("SILT_RT_STEPS", 12);
    let mut r = Rng(seed | 1);
    for partitioned in [false, true] {
        let layout = if partitioned { "part" } else { "flat" };
        let DmlPair {
            dir,
            src,
            ours,
            theirs,
        } = DmlPair::new(&format!("rt-{layout}"), seed, 500, 2);
        let mut args = vec!["--property", "delta.enableRowTracking=true"];
        let part: &[&str] = if partitioned {
            // Deletion vectors too: a file given one is added again with its row ids.
            args.extend([
                "--partition-by",
                "k",
                "--property",
                "delta.enableDeletionVectors=true",
            ]);
            &["--partition-by", "k"]
        } else {
            &[]
        };
        silt_write_ok(&ours, &src, &args);
        oracle_write(&theirs, &src, "parquet", part);
        let protocol = &last_commit(&ours)
            .into_iter()
            .find_map(|a| a.get("protocol").cloned())
            .expect("protocol");
        for f in ["rowTracking", "domainMetadata"] {
            assert!(
                protocol["writerFeatures"]
                    .as_array()
                    .expect("writerFeatures")
                    .contains(&Value::from(f)),
                "{protocol}"
            );
        }
        for step in 0..steps {
            let case = format!("{layout}-{step}");
            if r.below(4) == 0 {
                let more = Gen::new(seed + 50 + step as u64, 40)
                    .k_domain("1,2,3")
                    .id_start(2000 + 100 * step as i64)
                    .write(&dir.path().join(format!("more-{step}")));
                eprintln!("[{case}] append");
                silt_write_ok(&ours, &more, &[]);
                oracle_write(&theirs, &more, "parquet", &[]);
            } else {
                random_dml_step(
                    &mut r,
                    &RandomDml {
                        seed,
                        step,
                        case: &case,
                        dir: dir.path(),
                        ours: &ours,
                        theirs: &theirs,
                        merge_rows: 100,
                        id_span: 600,
                        random_exchange: true,
                    },
                );
            }
            assert_row_ids(&case, &ours);
        }
        let check = assert_row_ids(layout, &ours);
        eprintln!("[{layout}] {check}");
        assert_same_content(&ours, &[Expected::Table(&theirs)], &[]);
    }
}

/// Writers racing to append to a row-tracking table: each commit that loses a race gives its
/// files ids past the winner's mark, so no two files share a row id.
#[test]
fn racing_appends_take_distinct_row_ids() {
    let seed = seed_for("racing_appends_take_distinct_row_ids");
    let dir = tempdir("rt-race");
    let t = dir.path().join("t");
    let src = Gen::new(seed, 50).write(&dir.path().join("src"));
    silt_write_ok(&t, &src, &["--property", "delta.enableRowTracking=true"]);
    let writers: Vec<_> = (0..3)
        .map(|i| {
            let (t, src) = (t.clone(), src.clone());
            std::thread::spawn(move || {
                for _ in 0..2 {
                    let out = silt_write(&t, &src, &[]);
                    out.assert_ok();
                }
                i
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    let check = assert_row_ids("race", &t);
    assert_eq!(check["commits"], 7, "{check}");
    assert_eq!(check["mark"], 7 * 50 - 1, "{check}");
}
