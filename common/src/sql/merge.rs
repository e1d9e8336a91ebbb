//! `MERGE INTO` as Delta Spark writes it, parsed into a [`MergeRequest`].
//!
//! ```sql
//! MERGE [WITH SCHEMA EVOLUTION] INTO delta.`URI` [AS] t
//! USING <format>.`URI` [VERSION AS OF n | TIMESTAMP AS OF '…'] [AS] s
//! ON <condition>
//! WHEN MATCHED [AND <cond>] THEN UPDATE SET c = e, … | UPDATE SET * | DELETE
//! WHEN NOT MATCHED [BY TARGET] [AND <cond>] THEN INSERT [(c, …)] VALUES (e, …) | INSERT *
//! WHEN NOT MATCHED BY SOURCE [AND <cond>] THEN UPDATE SET c = e, … | DELETE
//! ```
//!
//! sqlparser's own MERGE parser does not know Delta's `UPDATE SET *`, `INSERT *` and `WITH
//! SCHEMA EVOLUTION`, so the clause list is read here with its expression, assignment and
//! table parsers. Conditions and expressions keep their qualifiers (`t.k = s.k`): both the
//! target's and the source's columns are in scope.

use datafusion::sql::sqlparser::ast::{AssignmentTarget, TableFactor};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::{Parsed, first_line, source_ref, table_uri, time_travel, unsupported};
use crate::Error;
use crate::request::{MergeAction, MergeClause, MergeClauseKind, MergeRequest, MergeSource};

/// Parses one `MERGE` statement (the parser is at `MERGE`).
pub(super) fn merge(p: &mut Parser) -> std::result::Result<MergeRequest, Parsed> {
    p.expect_keyword_is(Keyword::MERGE)?;
    let schema_evolution = if p.parse_keywords(&[Keyword::WITH, Keyword::SCHEMA]) {
        expect_word(p, "EVOLUTION")?;
        true
    } else {
        false
    };
    p.expect_keyword_is(Keyword::INTO)?;
    let (table_uri, target_alias) = match p.parse_table_factor()? {
        TableFactor::Table {
            name,
            alias,
            version: None,
            args: None,
            ..
        } => (table_uri(&name)?, alias.map(|a| a.name.value)),
        other => return Err(unsupported(format!("MERGE target `{other}`"))),
    };
    p.expect_keyword_is(Keyword::USING)?;
    let (source, source_alias) = match p.parse_table_factor()? {
        TableFactor::Table {
            name,
            alias,
            version,
            args: None,
            ..
        } => {
            let (format, uri) = source_ref(&name)?;
            let version = time_travel(format, version.as_ref())?;
            (
                MergeSource {
                    format,
                    uri,
                    version,
                },
                alias.map(|a| a.name.value),
            )
        }
        other => {
            return Err(unsupported(format!(
                "MERGE source `{}` (expected <format>.`URI` [AS alias])",
                first_line(&other.to_string())
            )));
        }
    };
    p.expect_keyword_is(Keyword::ON)?;
    let on = p.parse_expr()?.to_string();
    let mut clauses = Vec::new();
    while p.parse_keyword(Keyword::WHEN) {
        clauses.push(clause(p)?);
    }
    let request = MergeRequest {
        table_uri,
        target_alias,
        source,
        source_alias,
        on,
        clauses,
        schema_evolution,
        exchange: crate::request::ExchangeMode::Auto,
    };
    request.validate().map_err(Parsed::Other)?;
    Ok(request)
}

fn expect_word(p: &mut Parser, word: &str) -> std::result::Result<(), Parsed> {
    match p.next_token().token {
        Token::Word(w) if w.value.eq_ignore_ascii_case(word) => Ok(()),
        other => Err(Parsed::Other(Error::invalid(format!(
            "syntax error: expected {word}, found `{other}`"
        )))),
    }
}

fn clause(p: &mut Parser) -> std::result::Result<MergeClause, Parsed> {
    let not = p.parse_keyword(Keyword::NOT);
    p.expect_keyword_is(Keyword::MATCHED)?;
    let kind = if !not {
        MergeClauseKind::Matched
    } else if p.parse_keywords(&[Keyword::BY, Keyword::SOURCE]) {
        MergeClauseKind::NotMatchedBySource
    } else {
        let _ = p.parse_keywords(&[Keyword::BY, Keyword::TARGET]);
        MergeClauseKind::NotMatchedByTarget
    };
    let condition = if p.parse_keyword(Keyword::AND) {
        Some(p.parse_expr()?.to_string())
    } else {
        None
    };
    p.expect_keyword_is(Keyword::THEN)?;
    let action = if p.parse_keyword(Keyword::DELETE) {
        MergeAction::Delete
    } else if p.parse_keyword(Keyword::UPDATE) {
        p.expect_keyword_is(Keyword::SET)?;
        if p.consume_token(&Token::Mul) {
            MergeAction::UpdateAll
        } else {
            let assignments = p.parse_comma_separated(Parser::parse_assignment)?;
            MergeAction::Update(
                assignments
                    .into_iter()
                    .map(|a| {
                        let column = match &a.target {
                            AssignmentTarget::ColumnName(name) => target_column(name),
                            other => return Err(unsupported(format!("assignment to `{other}`"))),
                        };
                        Ok((column, a.value.to_string()))
                    })
                    .collect::<std::result::Result<_, Parsed>>()?,
            )
        }
    } else if p.parse_keyword(Keyword::INSERT) {
        if p.consume_token(&Token::Mul) {
            MergeAction::InsertAll
        } else {
            let columns = if p.peek_token().token == Token::LParen {
                p.expect_token(&Token::LParen)?;
                let cols = p.parse_comma_separated(|p| p.parse_identifier())?;
                p.expect_token(&Token::RParen)?;
                cols.into_iter().map(|c| c.value).collect()
            } else {
                Vec::new()
            };
            p.expect_keyword_is(Keyword::VALUES)?;
            p.expect_token(&Token::LParen)?;
            let values = p.parse_comma_separated(Parser::parse_expr)?;
            p.expect_token(&Token::RParen)?;
            MergeAction::Insert {
                columns,
                values: values.iter().map(ToString::to_string).collect(),
            }
        }
    } else {
        let t = p.peek_token();
        return Err(Parsed::Other(Error::invalid(format!(
            "syntax error: expected UPDATE, DELETE or INSERT after THEN, found `{}`",
            t.token
        ))));
    };
    Ok(MergeClause {
        kind,
        condition,
        action,
    })
}

/// The column an assignment sets: its last name part (`t.c` and `c` both set `c`).
fn target_column(name: &datafusion::sql::sqlparser::ast::ObjectName) -> String {
    name.0
        .last()
        .and_then(|part| part.as_ident())
        .map_or_else(|| name.to_string(), |i| i.value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::TimeTravel;
    use crate::task::SourceFormat;
    use datafusion::sql::sqlparser::dialect::DatabricksDialect;

    fn parse(sql: &str) -> crate::Result<MergeRequest> {
        let dialect = DatabricksDialect {};
        let mut p = Parser::new(&dialect).try_with_sql(sql).unwrap();
        merge(&mut p).map_err(|e| match e {
            Parsed::Syntax(e) => Error::invalid(e.to_string()),
            Parsed::Other(e) => e,
        })
    }

    #[test]
    fn every_clause_kind_and_form() {
        let m = parse(
            "MERGE WITH SCHEMA EVOLUTION INTO delta.`/t` AS t \
             USING delta.`/s` VERSION AS OF 3 s ON t.k = s.k AND t.p = s.p \
             WHEN MATCHED AND s.op = 'd' THEN DELETE \
             WHEN MATCHED AND s.v > t.v THEN UPDATE SET t.v = s.v, w = t.w + 1 \
             WHEN MATCHED THEN UPDATE SET * \
             WHEN NOT MATCHED AND s.v IS NOT NULL THEN INSERT (k, v) VALUES (s.k, s.v * 2) \
             WHEN NOT MATCHED BY TARGET THEN INSERT * \
             WHEN NOT MATCHED BY SOURCE AND t.v < 0 THEN DELETE \
             WHEN NOT MATCHED BY SOURCE THEN UPDATE SET v = 0",
        )
        .unwrap();
        assert_eq!(m.table_uri, "/t");
        assert_eq!(
            (m.target_alias.as_deref(), m.source_alias.as_deref()),
            (Some("t"), Some("s"))
        );
        assert_eq!(
            m.source,
            MergeSource {
                format: SourceFormat::Delta,
                uri: "/s".into(),
                version: TimeTravel::Version(3)
            }
        );
        assert!(m.schema_evolution);
        assert_eq!(m.on, "t.k = s.k AND t.p = s.p");
        use MergeClauseKind::*;
        let kinds: Vec<_> = m.clauses.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            vec![
                Matched,
                Matched,
                Matched,
                NotMatchedByTarget,
                NotMatchedByTarget,
                NotMatchedBySource,
                NotMatchedBySource
            ]
        );
        assert_eq!(m.clauses[0].action, MergeAction::Delete);
        assert_eq!(m.clauses[0].condition.as_deref(), Some("s.op = 'd'"));
        assert_eq!(
            m.clauses[1].action,
            MergeAction::Update(vec![
                ("v".into(), "s.v".into()),
                ("w".into(), "t.w + 1".into())
            ])
        );
        assert_eq!(m.clauses[2].action, MergeAction::UpdateAll);
        assert_eq!(
            m.clauses[3].action,
            MergeAction::Insert {
                columns: vec!["k".into(), "v".into()],
                values: vec!["s.k".into(), "s.v * 2".into()]
            }
        );
        assert_eq!(m.clauses[4].action, MergeAction::InsertAll);
        assert_eq!(
            m.clauses[6].action,
            MergeAction::Update(vec![("v".into(), "0".into())])
        );
    }

    #[test]
    fn bad_merges_name_the_problem() {
        for (sql, want) in [
            (
                "MERGE INTO delta.`/t` t USING parquet.`/s` s ON t.k = s.k \
                 WHEN MATCHED THEN DELETE WHEN MATCHED AND s.x THEN DELETE",
                "only the last WHEN MATCHED clause may omit its condition",
            ),
            (
                "MERGE INTO delta.`/t` t USING parquet.`/s` s ON t.k = s.k",
                "at least one WHEN clause",
            ),
            (
                "MERGE INTO delta.`/t` t USING parquet.`/s` s ON t.k = s.k \
                 WHEN NOT MATCHED THEN UPDATE SET v = 1",
                "NOT MATCHED [BY TARGET] clause can only INSERT",
            ),
            (
                "MERGE INTO delta.`/t` t USING parquet.`/s` s ON t.k = s.k \
                 WHEN MATCHED THEN INSERT *",
                "MATCHED clause cannot INSERT",
            ),
            (
                "MERGE INTO delta.`/t` t USING parquet.`/s` s ON t.k = s.k \
                 WHEN NOT MATCHED BY SOURCE THEN UPDATE SET *",
                "UPDATE SET * is not allowed in a NOT MATCHED BY SOURCE clause",
            ),
            (
                "MERGE INTO delta.`/t` t USING parquet.`/s` s ON t.k = s.k \
                 WHEN NOT MATCHED THEN INSERT (k, v) VALUES (s.k)",
                "2 column(s) but 1 value(s)",
            ),
            (
                "MERGE INTO delta.`/t` t USING parquet.`/s` VERSION AS OF 1 s ON t.k = s.k \
                 WHEN MATCHED THEN DELETE",
                "on a parquet source",
            ),
            (
                "MERGE INTO t USING parquet.`/s` s ON t.k = s.k WHEN MATCHED THEN DELETE",
                "unknown table `t`",
            ),
            (
                "MERGE INTO delta.`/t` t USING parquet.`/s` s ON t.k = s.k \
                 WHEN MATCHED THEN REPLACE",
                "expected UPDATE, DELETE or INSERT",
            ),
        ] {
            let e = parse(sql).expect_err(sql).to_string();
            assert!(e.contains(want), "{sql}\n  -> {e}\n  wanted: {want}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn the_front_door_turns_merge_into_a_job() {
        let jobs = crate::sql::parse(
            "MERGE INTO delta.`/t` t USING parquet.`/s` s ON t.k = s.k WHEN MATCHED THEN DELETE",
        )
        .unwrap();
        assert!(
            matches!(&jobs[..], [crate::request::JobRequest::Merge(m)] if m.table_uri == "/t"),
            "{jobs:?}"
        );
    }
}
