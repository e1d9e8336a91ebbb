//! Source-derived pruning for MERGE (pure): from the `ON` condition and a summary of the
//! source's join keys, a predicate over target columns that every target row a MERGE can
//! change satisfies. Files it rules out (`plan::rewrite::select_files`) are never read.
//!
//! * `t.a = s.b` conjuncts of `ON` (either order) become `a IN (values of b)` when the source
//!   has few distinct values of `b`, else `a BETWEEN min(b) AND max(b)`; a key whose values
//!   are all null matches nothing (nulls never match).
//! * Conjuncts of `ON` over target columns only are kept as they are.
//! * `WHEN NOT MATCHED BY SOURCE` clauses change target rows that match nothing: with one
//!   that has no condition, no file can be ruled out (`None`); otherwise their conditions
//!   (over target columns only) are OR-ed to the predicate. A condition of such a clause
//!   that reads source columns cannot hold for a row without a source row, so it adds
//!   nothing.

use std::collections::HashMap;

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Ident, visit_expressions, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::DatabricksDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// What the source's rows hold in one key column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeySummary {
    /// Smallest and largest non-null value, as SQL literals (`None`: every value is null).
    pub min: Option<String>,
    pub max: Option<String>,
    /// The distinct non-null values as SQL literals, when few.
    pub values: Option<Vec<String>>,
}

/// The side a column reference belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Target,
    Source,
}

/// Names in scope: the aliases and each side's columns (lower-cased).
pub struct Scope<'a> {
    pub target_alias: Option<&'a str>,
    pub source_alias: Option<&'a str>,
    pub target_columns: &'a [String],
    pub source_columns: &'a [String],
}

impl Scope<'_> {
    /// The side and column of a reference, if it resolves to exactly one.
    fn resolve(&self, e: &Expr) -> Option<(Side, String)> {
        let has = |cols: &[String], c: &str| cols.iter().any(|x| x.eq_ignore_ascii_case(c));
        match e {
            Expr::Nested(inner) => self.resolve(inner),
            Expr::Identifier(Ident { value, .. }) => {
                match (
                    has(self.target_columns, value),
                    has(self.source_columns, value),
                ) {
                    (true, false) => Some((Side::Target, value.to_ascii_lowercase())),
                    (false, true) => Some((Side::Source, value.to_ascii_lowercase())),
                    _ => None,
                }
            }
            Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
                let (q, c) = (&parts[0].value, &parts[1].value);
                let is = |a: Option<&str>| a.is_some_and(|a| a.eq_ignore_ascii_case(q));
                if is(self.target_alias) && has(self.target_columns, c) {
                    Some((Side::Target, c.to_ascii_lowercase()))
                } else if is(self.source_alias) && has(self.source_columns, c) {
                    Some((Side::Source, c.to_ascii_lowercase()))
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// Whether every column reference of `e` is a target column (and there is one).
    fn target_only(&self, e: &Expr) -> bool {
        let mut any = false;
        let all_target = visit_expressions(e, |x| {
            if matches!(x, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
                any = true;
                if !matches!(self.resolve(x), Some((Side::Target, _))) {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        })
        .is_continue();
        any && all_target
    }
}

fn conjuncts(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(*left, out);
            conjuncts(*right, out);
        }
        Expr::Nested(inner)
            if matches!(
                *inner,
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(*inner, out)
        }
        other => out.push(other),
    }
}

fn parse(sql: &str) -> Option<Expr> {
    Parser::new(&DatabricksDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// SQL of a target-side expression with its target qualifier removed.
fn unqualified(e: &Expr, scope: &Scope<'_>) -> String {
    let mut e = e.clone();
    let _ = visit_expressions_mut(&mut e, |x| {
        if let Expr::CompoundIdentifier(parts) = x
            && parts.len() == 2
            && scope
                .target_alias
                .is_some_and(|a| a.eq_ignore_ascii_case(&parts[0].value))
        {
            *x = Expr::Identifier(parts[1].clone());
        }
        ControlFlow::<()>::Continue(())
    });
    e.to_string()
}

/// The `target_col = source_col` conjuncts of `ON` (either order), as lower-cased
/// (target, source) column names: the keys rows can be exchanged by.
pub fn key_pairs(on: &str, scope: &Scope<'_>) -> Vec<(String, String)> {
    let Some(e) = parse(on) else {
        return Vec::new();
    };
    let mut all = Vec::new();
    conjuncts(e, &mut all);
    fn unnest(e: &Expr) -> &Expr {
        match e {
            Expr::Nested(inner) => unnest(inner),
            other => other,
        }
    }
    all.iter()
        .filter_map(|c| match unnest(c) {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => match (scope.resolve(left), scope.resolve(right)) {
                (Some((Side::Target, t)), Some((Side::Source, s)))
                | (Some((Side::Source, s)), Some((Side::Target, t))) => Some((t, s)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The pruning predicate over target columns (`None`: nothing can be ruled out).
/// `not_matched_by_source`: the conditions of the `WHEN NOT MATCHED BY SOURCE` clauses
/// (`None` for one without a condition).
pub fn target_predicate(
    on: &str,
    scope: &Scope<'_>,
    keys: &HashMap<String, KeySummary>,
    not_matched_by_source: &[Option<String>],
) -> Option<String> {
    let mut parts = Vec::new();
    let mut all = Vec::new();
    conjuncts(parse(on)?, &mut all);
    for c in &all {
        if let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = c
        {
            let pair = match (scope.resolve(left), scope.resolve(right)) {
                (Some((Side::Target, t)), Some((Side::Source, s)))
                | (Some((Side::Source, s)), Some((Side::Target, t))) => Some((t, s)),
                _ => None,
            };
            if let Some((t, s)) = pair {
                if let Some(k) = keys.get(&s) {
                    let col = format!("\"{}\"", t.replace('"', "\"\""));
                    parts.push(match (&k.values, &k.min, &k.max) {
                        (Some(v), _, _) if v.is_empty() => "FALSE".to_string(),
                        (Some(v), _, _) => format!("{col} IN ({})", v.join(", ")),
                        (None, Some(lo), Some(hi)) => format!("{col} BETWEEN {lo} AND {hi}"),
                        _ => "FALSE".to_string(),
                    });
                }
                continue;
            }
        }
        if scope.target_only(c) {
            parts.push(format!("({})", unqualified(c, scope)));
        }
    }
    if parts.is_empty() {
        return None;
    }
    let mut predicate = parts.join(" AND ");
    for cond in not_matched_by_source {
        let cond = cond.as_deref()?;
        let e = parse(cond)?;
        if scope.target_only(&e) {
            predicate = format!("({predicate}) OR ({})", unqualified(&e, scope));
        }
    }
    Some(predicate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| s.to_string()).collect()
    }

    fn keys() -> HashMap<String, KeySummary> {
        HashMap::from([
            (
                "id".to_string(),
                KeySummary {
                    min: Some("10".into()),
                    max: Some("20".into()),
                    values: None,
                },
            ),
            (
                "p".to_string(),
                KeySummary {
                    min: Some("'a'".into()),
                    max: Some("'b'".into()),
                    values: Some(vec!["'a'".into(), "'b'".into()]),
                },
            ),
            ("n".to_string(), KeySummary::default()),
        ])
    }

    fn predicate(on: &str, nmbs: &[Option<String>]) -> Option<String> {
        let target = cols(&["id", "p", "v", "n"]);
        let source = cols(&["id", "p", "w", "n"]);
        let scope = Scope {
            target_alias: Some("t"),
            source_alias: Some("s"),
            target_columns: &target,
            source_columns: &source,
        };
        target_predicate(on, &scope, &keys(), nmbs)
    }

    #[test]
    fn key_equalities_become_ranges_or_value_sets() {
        assert_eq!(
            predicate("t.id = s.id AND s.p = t.p", &[]).as_deref(),
            Some("\"id\" BETWEEN 10 AND 20 AND \"p\" IN ('a', 'b')")
        );
        // Target-only conjuncts are kept, unqualified; source-only ones add nothing.
        assert_eq!(
            predicate("t.id = s.id AND t.v > 3 AND s.w < 1", &[]).as_deref(),
            Some("\"id\" BETWEEN 10 AND 20 AND (v > 3)")
        );
        // A key that is null in every source row matches nothing.
        assert_eq!(predicate("t.n = s.n", &[]).as_deref(), Some("FALSE"));
        // Nothing to go on: no pruning.
        assert_eq!(predicate("t.v = s.w + 1", &[]), None);
    }

    #[test]
    fn key_pairs_are_the_equalities_between_the_sides() {
        let target = cols(&["id", "p", "v"]);
        let source = cols(&["id", "p", "w"]);
        let scope = Scope {
            target_alias: Some("t"),
            source_alias: Some("s"),
            target_columns: &target,
            source_columns: &source,
        };
        assert_eq!(
            key_pairs(
                "t.id = s.id AND (s.p = t.P) AND t.v > s.w AND v = 1",
                &scope
            ),
            vec![("id".into(), "id".into()), ("p".into(), "p".into())]
        );
        assert_eq!(key_pairs("t.v = s.w + 1", &scope), vec![]);
    }

    #[test]
    fn not_matched_by_source_clauses_widen_or_disable_pruning() {
        assert_eq!(
            predicate("t.id = s.id", &[Some("t.v < 0".into())]).as_deref(),
            Some("(\"id\" BETWEEN 10 AND 20) OR (v < 0)")
        );
        assert_eq!(predicate("t.id = s.id", &[None]), None);
        // A condition reading the source cannot hold without a source row.
        assert_eq!(
            predicate("t.id = s.id", &[Some("s.w > 1".into())]).as_deref(),
            Some("\"id\" BETWEEN 10 AND 20")
        );
    }
}
