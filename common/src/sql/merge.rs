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

use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, Expr, GroupByExpr, Query, SelectItem, SetExpr, TableFactor,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::{Parsed, expr_sql, first_line, source_ref, table_uri, time_travel, unsupported};
use crate::Error;
use crate::request::{MergeAction, MergeClause, MergeClauseKind, MergeRequest, MergeSource};
use crate::task::{Assignment, SelectSpec};

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
                    select: None,
                },
                alias.map(|a| a.name.value),
            )
        }
        TableFactor::Derived {
            lateral: false,
            subquery,
            alias,
            ..
        } => (select_source(&subquery)?, alias.map(|a| a.name.value)),
        other => {
            return Err(unsupported(format!(
                "MERGE source `{}` (expected <format>.`URI` [AS alias] or (SELECT …))",
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
        copy_on_write: false,
    };
    request.validate().map_err(Parsed::Other)?;
    Ok(request)
}

/// `(SELECT <columns> FROM <format>.\`URI\` [alias] [VERSION AS OF …] [WHERE <condition>])`:
/// the source with a select list (`*`, columns, `expr AS name`) and a condition; joins,
/// grouping, ordering and limits are refused.
fn select_source(query: &Query) -> std::result::Result<MergeSource, Parsed> {
    let bad = |why: &str| {
        unsupported(format!(
            "MERGE source `({})`: {why} (only SELECT <columns> FROM <format>.`URI` [WHERE …])",
            first_line(&query.to_string())
        ))
    };
    if query.with.is_some()
        || query.order_by.is_some()
        || query.limit_clause.is_some()
        || query.fetch.is_some()
    {
        return Err(bad("WITH, ORDER BY and LIMIT are not supported"));
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Err(bad("not a single SELECT"));
    };
    let grouped =
        !matches!(&select.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    if select.distinct.is_some() || select.having.is_some() || grouped {
        return Err(bad("DISTINCT, GROUP BY and HAVING are not supported"));
    }
    let [from] = select.from.as_slice() else {
        return Err(bad("it must read one source"));
    };
    if !from.joins.is_empty() {
        return Err(bad("joins are not supported"));
    }
    let TableFactor::Table {
        name,
        version,
        alias,
        args: None,
        ..
    } = &from.relation
    else {
        return Err(bad("it must read <format>.`URI`"));
    };
    let (format, uri) = source_ref(name)?;
    let version = time_travel(format, version.as_ref())?;
    let inner = alias.as_ref().map(|a| a.name.value.as_str());
    let mut columns = Vec::new();
    for item in &select.projection {
        match item {
            SelectItem::Wildcard(_) if select.projection.len() == 1 => {}
            SelectItem::UnnamedExpr(e) => {
                let name = match e {
                    Expr::Identifier(i) => i.value.clone(),
                    Expr::CompoundIdentifier(parts) => {
                        parts.last().map(|p| p.value.clone()).unwrap_or_default()
                    }
                    other => {
                        return Err(bad(&format!("give `{other}` a name with AS")));
                    }
                };
                columns.push(Assignment {
                    column: name,
                    expr: expr_sql(e.clone(), inner),
                });
            }
            SelectItem::ExprWithAlias { expr, alias } => columns.push(Assignment {
                column: alias.value.clone(),
                expr: expr_sql(expr.clone(), inner),
            }),
            other => return Err(bad(&format!("`{other}` is not supported"))),
        }
    }
    Ok(MergeSource {
        format,
        uri,
        version,
        select: Some(SelectSpec {
            columns,
            filter: select.selection.clone().map(|w| expr_sql(w, inner)),
        }),
    })
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
                version: TimeTravel::Version(3),
                select: None,
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
    fn a_select_over_a_source() {
        let m = parse(
            "MERGE INTO delta.`/t` t USING (SELECT x.id, v * 2 AS w, s FROM parquet.`/s` x \
             WHERE x.v > 0) AS s ON t.id = s.id WHEN MATCHED THEN UPDATE SET w = s.w",
        )
        .unwrap();
        let select = m.source.select.expect("a select");
        let cols: Vec<(&str, &str)> = select
            .columns
            .iter()
            .map(|a| (a.column.as_str(), a.expr.as_str()))
            .collect();
        assert_eq!(cols, vec![("id", "id"), ("w", "v * 2"), ("s", "s")]);
        assert_eq!(select.filter.as_deref(), Some("v > 0"));
        assert_eq!(m.source.uri, "/s");
        for bad in [
            "(SELECT a FROM parquet.`/s` ORDER BY a)",
            "(SELECT a + 1 FROM parquet.`/s`)",
            "(SELECT a FROM parquet.`/s` GROUP BY a)",
            "(SELECT a FROM parquet.`/s` JOIN parquet.`/u` ON true)",
        ] {
            let e = parse(&format!(
                "MERGE INTO delta.`/t` t USING {bad} s ON t.a = s.a WHEN MATCHED THEN DELETE"
            ))
            .unwrap_err()
            .to_string();
            assert!(e.contains("MERGE source"), "{bad}: {e}");
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
