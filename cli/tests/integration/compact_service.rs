//! `silt compact-service --once` on a root holding several tables (nested, partitioned,
//! one clustered by its `silt.zorderBy` property): the first pass compacts or clusters each
//! once with the same rows, the second reports nothing to do and commits nothing.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

fn service(root: &std::path::Path) -> Out {
    let mut cmd = Command::new(silt_bin());
    cmd.args([
        "compact-service",
        "--root",
        &s(root),
        "--once",
        "--executors",
        "2",
    ]);
    run(cmd, Duration::from_secs(300))
}

#[test]
fn the_service_compacts_every_table_once_then_has_nothing_to_do() {
    let seed = seed_for("the_service_compacts_every_table_once_then_has_nothing_to_do");
    let dir = tempdir("compact-service");
    let root = dir.path().join("warehouse");
    let tables = [
        (root.join("sales").join("t1"), vec![]),
        (
            root.join("db").join("inner").join("t2"),
            vec!["--partition-by", "k"],
        ),
        (root.join("t3"), vec!["--property", "silt.zorderBy=id,f"]),
    ];
    let mut originals = Vec::new();
    for (n, (t, extra)) in tables.iter().enumerate() {
        for i in 0..3u64 {
            let src = Gen::new(seed + 10 * n as u64 + i, 400)
                .k_domain("1,2")
                .id_start(i as i64 * 1000)
                .write(&dir.path().join(format!("src-{n}-{i}")));
            let first: &[&str] = if i == 0 { extra } else { &[] };
            silt_write_ok(t, &src, first);
        }
        let copy = dir.path().join(format!("original-{n}"));
        copy_dir(t, &copy);
        originals.push(copy);
    }
    // Not a table: ignored.
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();

    let out = service(&root);
    out.assert_ok();
    eprintln!("{}", out.stdout);
    assert!(out.stdout.contains("3 table(s)"), "{}", out.stdout);
    for ((t, _), original) in tables.iter().zip(&originals) {
        let line = out
            .stdout
            .lines()
            .find(|l| l.contains(&format!("{}:", s(t))))
            .unwrap_or_else(|| panic!("no line for {}: {}", s(t), out.stdout));
        assert!(
            line.contains("compacted") || line.contains("clustered"),
            "{line}"
        );
        assert_eq!(last_commit_info(t)["operation"], "OPTIMIZE", "{line}");
        assert_same_content(t, &[Expected::Table(original)], &[]);
    }
    let t3 = last_commit_info(&tables[2].0);
    assert_eq!(t3["operationParameters"]["zOrderBy"], r#"["id","f"]"#);
    let versions: Vec<_> = tables
        .iter()
        .map(|(t, _)| inspect(t)["version"].clone())
        .collect();

    let again = service(&root);
    again.assert_ok();
    assert_eq!(
        again.stdout.matches(": nothing to do").count(),
        3,
        "{}",
        again.stdout
    );
    let after: Vec<_> = tables
        .iter()
        .map(|(t, _)| inspect(t)["version"].clone())
        .collect();
    assert_eq!(versions, after, "the second pass commits nothing");
}
