//! SQL expressions compiled with DataFusion: predicates (`replaceWhere`, DELETE/UPDATE
//! conditions, `OPTIMIZE … WHERE`) and scalar expressions (UPDATE assignments).
//!
//! An [`Expression`] is parsed once against a schema and evaluated on any batch that has the
//! columns it references (found by name, case-insensitively), so the same predicate works on
//! full rows, on projected rows and on batches of partition values.
//!
//! Column names are case-insensitive, as in Spark: `Year = 2020`, `year = 2020`,
//! `"YEAR" = 2020` and `` `Year` = 2020 `` all reference a column `Year`. Like Spark, a
//! double-quoted name that is not a column is read as a string literal (`d = "2020-01-01"`).

use std::collections::HashSet;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use arrow::compute::prep_null_mask_filter;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::DFSchema;
use datafusion::common::config::Dialect;
use datafusion::common::tree_node::TreeNode;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Expr, ExprSchemable};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, Ident, Value as SqlValue, visit_expressions_mut,
};

use crate::{Error, Result};

/// The DataFusion session expressions are planned with, made once: building one registers
/// every built-in function, which costs more than planning a predicate.
fn session() -> &'static SessionState {
    static STATE: OnceLock<SessionState> = OnceLock::new();
    STATE.get_or_init(|| SessionContext::new().state())
}

/// A compiled SQL expression of any type.
#[derive(Clone)]
pub struct Expression {
    sql: String,
    /// The planned (type-checked, simplified) logical expression.
    expr: Expr,
    data_type: DataType,
    /// Referenced columns, in the order of the schema the expression was compiled against
    /// (table spelling). The physical expression is bound to exactly these, as nullable.
    input_schema: SchemaRef,
    physical: Arc<dyn PhysicalExpr>,
}

impl fmt::Debug for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expression")
            .field("sql", &self.sql)
            .field("type", &self.data_type)
            .field("columns", &self.columns())
            .finish()
    }
}

impl Expression {
    /// Parses and type-checks `sql` against `schema`.
    ///
    /// Errors are [`Error::InvalidPredicate`] with a short reason: a syntax error, an
    /// unknown column, an aggregate, window or subquery, a non-deterministic function, or a
    /// type error DataFusion reports.
    pub fn compile(sql: &str, schema: &SchemaRef) -> Result<Expression> {
        let invalid = |reason: String| Error::InvalidPredicate {
            predicate: sql.to_string(),
            reason,
        };
        if sql.trim().is_empty() {
            return Err(invalid("empty expression".into()));
        }
        let state = session();
        let mut ast = state
            .sql_to_expr_with_alias(sql, &Dialect::Generic)
            .map_err(|e| invalid(df_reason(&e)))?;
        if let Some(alias) = &ast.alias {
            return Err(invalid(format!("unexpected alias `{alias}`")));
        }
        if let ControlFlow::Break(reason) = resolve_identifiers(&mut ast.expr, schema.fields()) {
            return Err(invalid(reason));
        }

        let df_schema = DFSchema::try_from(schema.as_ref().clone())
            .map_err(|e| invalid(format!("invalid schema: {}", df_reason(&e))))?;
        let expr = state
            .create_logical_expr_from_sql_expr(ast, &df_schema)
            .map_err(|e| invalid(df_reason(&e)))?;
        let has = |f: fn(&Expr) -> bool| expr.exists(|e| Ok(f(e))).unwrap_or(false);
        if has(|e| matches!(e, Expr::AggregateFunction(_) | Expr::WindowFunction(_))) {
            return Err(invalid(
                "aggregate and window functions are not allowed here".into(),
            ));
        }
        if has(|e| {
            matches!(
                e,
                Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_)
            )
        }) {
            return Err(invalid("subqueries are not allowed here".into()));
        }
        if expr.is_volatile() {
            return Err(invalid(
                "non-deterministic functions are not allowed here".into(),
            ));
        }
        let data_type = expr
            .get_type(&df_schema)
            .map_err(|e| invalid(df_reason(&e)))?;
        // Types coerced, constants folded and literal casts unwrapped from comparisons, so
        // that statistics pruning sees `col > literal` rather than `CAST(col) > literal`.
        let simplifier = ExprSimplifier::new(
            SimplifyContext::builder()
                .with_schema(Arc::new(df_schema.clone()))
                .build(),
        );
        let expr = simplifier
            .coerce(expr, &df_schema)
            .and_then(|e| simplifier.simplify(e))
            .map_err(|e| invalid(df_reason(&e)))?;

        let referenced: HashSet<String> = expr
            .column_refs()
            .into_iter()
            .map(|c| c.name.clone())
            .collect();
        let input_fields: Vec<Field> = schema
            .fields()
            .iter()
            .filter(|f| referenced.contains(f.name()))
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        if input_fields.len() != referenced.len() {
            return Err(invalid(format!(
                "unsupported column reference in {:?}",
                referenced
            )));
        }
        let input_schema = Arc::new(Schema::new(input_fields));
        let input_df = DFSchema::try_from(input_schema.as_ref().clone())
            .map_err(|e| invalid(df_reason(&e)))?;
        let physical = state
            .create_physical_expr(expr.clone(), &input_df)
            .map_err(|e| invalid(df_reason(&e)))?;
        // Evaluating on no rows still evaluates constant sub-expressions, so bad literals
        // (`d > 'not a date'`) fail here rather than in the middle of a job.
        let empty = RecordBatch::new_empty(input_schema.clone());
        physical
            .evaluate(&empty)
            .map_err(|e| invalid(df_reason(&e)))?;
        Ok(Expression {
            sql: sql.to_string(),
            expr,
            data_type,
            input_schema,
            physical,
        })
    }

    /// Evaluates the expression on every row of `batch`.
    ///
    /// `batch` must have the referenced columns (matched by name case-insensitively);
    /// others are ignored. A column of another type is cast to the compiled type.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let invalid = |reason: String| Error::InvalidPredicate {
            predicate: self.sql.clone(),
            reason,
        };
        let batch_schema = batch.schema();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.input_schema.fields().len());
        for field in self.input_schema.fields() {
            let idx = batch_schema.index_of(field.name()).ok().or_else(|| {
                batch_schema
                    .fields()
                    .iter()
                    .position(|f| f.name().to_lowercase() == field.name().to_lowercase())
            });
            let Some(idx) = idx else {
                return Err(invalid(format!(
                    "the data has no column `{}`",
                    field.name()
                )));
            };
            let column = batch.column(idx);
            let column = if column.data_type() == field.data_type() {
                column.clone()
            } else {
                arrow::compute::cast(column, field.data_type()).map_err(|e| {
                    invalid(format!(
                        "cannot convert column `{}` to {}: {e}",
                        field.name(),
                        crate::schema::type_name(field.data_type())
                    ))
                })?
            };
            columns.push(column);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        let input =
            RecordBatch::try_new_with_options(self.input_schema.clone(), columns, &options)?;
        self.physical
            .evaluate(&input)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(|e| invalid(format!("cannot evaluate: {}", df_reason(&e))))
    }

    /// The expression as given.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The expression's result type.
    pub fn data_type(&self) -> &DataType {
        &self.data_type
    }

    /// The columns the expression references, in schema order, spelled as in the schema.
    pub fn columns(&self) -> Vec<String> {
        self.input_schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// Whether every referenced column is one of `cols` (compared case-insensitively), e.g.
    /// whether a predicate can be decided from partition values alone.
    pub fn only_references(&self, cols: &[String]) -> bool {
        self.input_schema.fields().iter().all(|f| {
            cols.iter()
                .any(|c| c == f.name() || c.to_lowercase() == f.name().to_lowercase())
        })
    }

    /// The planned logical expression (columns spelled as in the schema).
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// The physical expression, bound to [`Expression::input_schema`].
    pub fn physical(&self) -> &Arc<dyn PhysicalExpr> {
        &self.physical
    }

    /// The referenced columns (nullable), as the physical expression expects them.
    pub fn input_schema(&self) -> &SchemaRef {
        &self.input_schema
    }
}

/// A compiled boolean SQL predicate.
#[derive(Clone)]
pub struct Predicate(Expression);

impl fmt::Debug for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Predicate")
            .field("sql", &self.0.sql)
            .field("columns", &self.0.columns())
            .finish()
    }
}

impl std::ops::Deref for Predicate {
    type Target = Expression;
    fn deref(&self) -> &Expression {
        &self.0
    }
}

impl Predicate {
    /// Parses and type-checks `sql` against `schema`; it must be boolean.
    pub fn compile(sql: &str, schema: &SchemaRef) -> Result<Predicate> {
        let e = Expression::compile(sql, schema).map_err(|e| match e {
            Error::InvalidPredicate { predicate, reason } if reason == "empty expression" => {
                Error::InvalidPredicate {
                    predicate,
                    reason: "empty predicate".into(),
                }
            }
            e => e,
        })?;
        if e.data_type != DataType::Boolean && e.data_type != DataType::Null {
            return Err(Error::InvalidPredicate {
                predicate: sql.to_string(),
                reason: format!(
                    "the predicate must be a boolean expression, but it is of type {}",
                    crate::schema::type_name(&e.data_type)
                ),
            });
        }
        Ok(Predicate(e))
    }

    /// Evaluates the predicate on every row of `batch`. The result has no nulls: a row for
    /// which the predicate is null (unknown) is `false`, i.e. "not true".
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray> {
        let value = self.0.evaluate(batch)?;
        if value.data_type() == &DataType::Null {
            return Ok(BooleanArray::from(vec![false; batch.num_rows()]));
        }
        let result = value.as_boolean_opt().ok_or_else(|| {
            Error::internal(format!(
                "predicate `{}` evaluated to {} instead of boolean",
                self.0.sql,
                value.data_type()
            ))
        })?;
        Ok(if result.null_count() > 0 {
            prep_null_mask_filter(result)
        } else {
            result.clone()
        })
    }
}

/// Rewrites every column reference in `expr` to a quoted identifier with the schema's exact
/// spelling, so DataFusion resolves names case-insensitively. Unknown names break with a
/// reason; an unknown double-quoted name becomes a string literal (Spark semantics).
fn resolve_identifiers(expr: &mut SqlExpr, fields: &Fields) -> ControlFlow<String> {
    let lookup = |name: &str| -> Option<&Arc<Field>> {
        fields.iter().find(|f| f.name() == name).or_else(|| {
            let lower = name.to_lowercase();
            fields.iter().find(|f| f.name().to_lowercase() == lower)
        })
    };
    visit_expressions_mut(expr, |e| {
        match e {
            SqlExpr::Identifier(ident) => match lookup(&ident.value) {
                Some(f) => *ident = Ident::with_quote('"', f.name().as_str()),
                None if ident.quote_style == Some('"') => {
                    *e = SqlExpr::value(SqlValue::SingleQuotedString(ident.value.clone()));
                }
                None => return ControlFlow::Break(unknown_column(&ident.value, fields)),
            },
            SqlExpr::CompoundIdentifier(parts) => {
                let Some(first) = parts.first() else {
                    return ControlFlow::Continue(());
                };
                match lookup(&first.value) {
                    Some(f) => {
                        // Resolve nested struct field names too, as far as they are structs.
                        let mut dt = f.data_type().clone();
                        parts[0] = Ident::with_quote('"', f.name().as_str());
                        for part in parts.iter_mut().skip(1) {
                            let DataType::Struct(children) = &dt else {
                                break;
                            };
                            let lower = part.value.to_lowercase();
                            let Some(child) = children
                                .iter()
                                .find(|c| c.name() == &part.value)
                                .or_else(|| {
                                    children.iter().find(|c| c.name().to_lowercase() == lower)
                                })
                            else {
                                break;
                            };
                            *part = Ident::with_quote('"', child.name().as_str());
                            dt = child.data_type().clone();
                        }
                    }
                    None => {
                        let name = parts
                            .iter()
                            .map(|p| p.value.as_str())
                            .collect::<Vec<_>>()
                            .join(".");
                        return ControlFlow::Break(unknown_column(&name, fields));
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    })
}

fn unknown_column(name: &str, fields: &Fields) -> String {
    const MAX_LISTED: usize = 20;
    let mut names: Vec<String> = fields
        .iter()
        .take(MAX_LISTED)
        .map(|f| format!("`{}`", f.name()))
        .collect();
    if fields.len() > MAX_LISTED {
        names.push("…".into());
    }
    format!("unknown column `{name}` (columns: {})", names.join(", "))
}

/// A short reason from a DataFusion error (no backtrace, no nesting noise).
fn df_reason(e: &DataFusionError) -> String {
    let root = e.find_root();
    let msg = match root {
        DataFusionError::SQL(pe, _) => {
            let pe = pe.to_string();
            let pe = pe.strip_prefix("sql parser error: ").unwrap_or(&pe);
            format!("syntax error: {pe}")
        }
        DataFusionError::SchemaError(se, _) => se.to_string(),
        other => other.message().to_string(),
    };
    const MAX_REASON_CHARS: usize = 300;
    let first = msg.lines().next().unwrap_or_default().trim();
    if first.chars().count() > MAX_REASON_CHARS {
        let cut: String = first.chars().take(MAX_REASON_CHARS).collect();
        format!("{cut}…")
    } else {
        first.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        Date32Array, Float64Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::TimeUnit;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("Year", DataType::Int32, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("d", DataType::Date32, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("x", DataType::Float64, true),
        ]))
    }

    fn batch() -> RecordBatch {
        // 2020-01-01 = day 18262
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int32Array::from(vec![2019, 2020, 2021, 2022])),
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    Some("b"),
                    None,
                    Some("d'x"),
                ])),
                Arc::new(Date32Array::from(vec![
                    Some(18261),
                    Some(18262),
                    Some(18263),
                    None,
                ])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        Some(1_577_836_799_000_000), // 2019-12-31 23:59:59
                        Some(1_577_836_800_000_000), // 2020-01-01 00:00:00
                        None,
                        Some(1_600_000_000_000_000),
                    ])
                    .with_timezone("UTC"),
                ),
                Arc::new(Float64Array::from(vec![
                    Some(1.5),
                    None,
                    Some(-2.0),
                    Some(0.0),
                ])),
            ],
        )
        .unwrap()
    }

    fn eval(sql: &str) -> Vec<bool> {
        let p = Predicate::compile(sql, &schema()).unwrap();
        let r = p.evaluate(&batch()).unwrap();
        assert_eq!(r.null_count(), 0);
        r.iter().map(|v| v.unwrap_or(false)).collect()
    }

    fn reason(sql: &str) -> String {
        match Predicate::compile(sql, &schema()) {
            Err(Error::InvalidPredicate { predicate, reason }) => {
                assert_eq!(predicate, sql);
                reason
            }
            other => panic!("expected InvalidPredicate for `{sql}`, got {other:?}"),
        }
    }

    #[test]
    fn comparisons_and_logic() {
        assert_eq!(eval("Year = 2020"), [false, true, false, false]);
        assert_eq!(eval("year >= 2021"), [false, false, true, true]);
        assert_eq!(eval("YEAR <> 2020 AND x > 0"), [true, false, false, false]);
        assert_eq!(
            eval("year = 2019 OR name = 'b'"),
            [true, true, false, false]
        );
        assert_eq!(eval("NOT (year < 2021)"), [false, false, true, true]);
        assert_eq!(eval("year IN (2019, 2022)"), [true, false, false, true]);
        assert_eq!(eval("year NOT IN (2019, 2022)"), [false, true, true, false]);
        assert_eq!(
            eval("year BETWEEN 2020 AND 2021"),
            [false, true, true, false]
        );
        assert_eq!(eval("x + 1 > 1"), [true, false, false, false]);
    }

    #[test]
    fn nulls_are_not_true() {
        assert_eq!(eval("name IS NULL"), [false, false, true, false]);
        assert_eq!(eval("name IS NOT NULL"), [true, true, false, true]);
        // name <> 'a' is null for the null row: not true.
        assert_eq!(eval("name <> 'a'"), [false, true, false, true]);
        assert_eq!(eval("x > 0"), [true, false, false, false]);
    }

    #[test]
    fn quoting_and_case() {
        assert_eq!(eval("\"Year\" = 2020"), [false, true, false, false]);
        assert_eq!(eval("\"YEAR\" = 2020"), [false, true, false, false]);
        assert_eq!(eval("`year` = 2020"), [false, true, false, false]);
        assert_eq!(eval("NAME = \"b\""), [false, true, false, false]);
        assert_eq!(eval("name = 'd''x'"), [false, false, false, true]);
        assert_eq!(eval("name LIKE 'd%'"), [false, false, false, true]);
        assert_eq!(eval("upper(name) = 'B'"), [false, true, false, false]);
    }

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(eval("d >= '2020-01-01'"), [false, true, true, false]);
        assert_eq!(eval("d >= DATE '2020-01-01'"), [false, true, true, false]);
        assert_eq!(eval("d = '2020-01-01'"), [false, true, false, false]);
        assert_eq!(
            eval("ts >= TIMESTAMP '2020-01-01 00:00:00'"),
            [false, true, false, true]
        );
        assert_eq!(
            eval("ts < '2020-01-01T00:00:00Z'"),
            [true, false, false, false]
        );
    }

    #[test]
    fn columns_and_only_references() {
        let p = Predicate::compile("x > 0 AND YEAR = 2020", &schema()).unwrap();
        assert_eq!(p.columns(), vec!["Year".to_string(), "x".to_string()]);
        assert!(p.only_references(&["year".into(), "x".into(), "name".into()]));
        assert!(!p.only_references(&["Year".into()]));
        assert_eq!(p.sql(), "x > 0 AND YEAR = 2020");
    }

    #[test]
    fn evaluates_on_batches_with_only_the_referenced_columns() {
        let p = Predicate::compile("year = 2020", &schema()).unwrap();
        // Partition-values batch: a different column order, other spelling, Int64 type.
        let b = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("other", DataType::Utf8, true),
                Field::new("YEAR", DataType::Int64, true),
            ])),
            vec![
                Arc::new(StringArray::from(vec!["q", "r"])),
                Arc::new(Int64Array::from(vec![Some(2020), None])),
            ],
        )
        .unwrap();
        let r = p.evaluate(&b).unwrap();
        assert_eq!(r.iter().collect::<Vec<_>>(), [Some(true), Some(false)]);

        let missing = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("other", DataType::Utf8, true)])),
            vec![Arc::new(StringArray::from(vec!["q"]))],
        )
        .unwrap();
        assert!(matches!(
            p.evaluate(&missing),
            Err(Error::InvalidPredicate { .. })
        ));

        // A predicate without columns.
        let t = Predicate::compile("1 = 1", &schema()).unwrap();
        assert!(t.columns().is_empty());
        assert_eq!(t.evaluate(&b).unwrap().true_count(), 2);
    }

    #[test]
    fn errors_are_clear() {
        let r = reason("year = ");
        assert!(r.starts_with("syntax error"), "{r}");
        let r = reason("year = 2020 AND (");
        assert!(r.starts_with("syntax error"), "{r}");
        let r = reason("foo = 1");
        assert!(r.starts_with("unknown column `foo`"), "{r}");
        let r = reason("t.year = 1");
        assert!(r.starts_with("unknown column `t.year`"), "{r}");
        let r = reason("year + 1");
        assert!(r.contains("boolean"), "{r}");
        let r = reason("name");
        assert!(r.contains("boolean"), "{r}");
        let r = reason("sum(year) > 1");
        assert!(r.contains("aggregate"), "{r}");
        let r = reason("year IN (SELECT 1)");
        assert!(!r.is_empty() && r.len() < 400, "{r}");
        let r = reason("random() > 0.5");
        assert!(r.contains("non-deterministic"), "{r}");
        let r = reason("");
        assert!(r.contains("empty"), "{r}");
        let r = reason("no_such_fn(year) = 1");
        assert!(!r.is_empty(), "{r}");
        let r = reason("d > 'not a date'");
        assert!(!r.is_empty(), "{r}");
    }

    #[test]
    fn nested_fields_and_odd_names() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new(
                "St",
                DataType::Struct(vec![Field::new("Inner", DataType::Int32, true)].into()),
                true,
            ),
            Field::new("my col", DataType::Utf8, true),
        ]));
        let inner: ArrayRef = Arc::new(Int32Array::from(vec![1, 2]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(arrow::array::StructArray::from(vec![(
                    Arc::new(Field::new("Inner", DataType::Int32, true)),
                    inner,
                )])),
                Arc::new(StringArray::from(vec!["x", "y"])),
            ],
        )
        .unwrap();
        for sql in ["st.inner = 2", "ST.INNER = 2", "`St`.`Inner` = 2"] {
            let p = Predicate::compile(sql, &schema).unwrap();
            assert_eq!(p.columns(), vec!["St".to_string()], "{sql}");
            let r = p.evaluate(&batch).unwrap();
            assert_eq!(
                r.iter().collect::<Vec<_>>(),
                [Some(false), Some(true)],
                "{sql}"
            );
        }
        let p = Predicate::compile("`MY COL` = 'x'", &schema).unwrap();
        assert_eq!(p.evaluate(&batch).unwrap().true_count(), 1);
        assert!(Predicate::compile("st.nope = 1", &schema).is_err());
    }
}
