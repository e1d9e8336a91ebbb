//! `silt sql`: Spark's Delta SQL statements turned into job requests.
//!
//! Parsing is sqlparser's (DataFusion's copy, Databricks dialect), with a small layer for the
//! Delta clauses it does not know: `DESCRIBE HISTORY|DETAIL`, `INSERT … REPLACE WHERE`,
//! `ALTER TABLE … SET|UNSET TBLPROPERTIES`. Tables are named `delta.\`URI\``; sources are
//! `parquet.\`URI\``, `csv.\`URI\``, `json.\`URI\`` or `delta.\`URI\`` (optionally
//! `VERSION AS OF n` / `TIMESTAMP AS OF '…'`). Conditions and expressions are kept as SQL text
//! (table aliases removed) and compiled later against the table schema.
//!
//! Statements: `DELETE FROM`, `UPDATE … SET`, `INSERT INTO|OVERWRITE [TABLE] … [PARTITION
//! (…)] [REPLACE WHERE …] SELECT * FROM <source>`, `ALTER TABLE … SET|UNSET TBLPROPERTIES`,
//! `DESCRIBE HISTORY … [LIMIT n]`, `DESCRIBE DETAIL …`, `MERGE INTO` ([`merge`]), `OPTIMIZE …
//! [WHERE …] [ZORDER BY (…)]`, `VACUUM … [RETAIN n HOURS] [DRY RUN]`, `ANALYZE TABLE …
//! COMPUTE DELTA STATISTICS [FOR COLUMNS …]`. Anything else is an error quoting it.

pub mod merge;

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FromTable, Ident, ObjectName, ObjectNamePart, Query, SelectItem, SetExpr, Statement,
    TableFactor, TableVersion, Value, ValueWithSpan, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::DatabricksDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::request::{
    AlterTableRequest, ColumnChange, DeleteRequest, DescribeKind, DescribeRequest, JobRequest,
    UpdateRequest, WriteMode, WriteRequest,
};
use crate::table::TimeTravel;
use crate::task::SourceFormat;
use crate::{Error, Result};

/// Longest SQL text accepted (all statements together).
pub const MAX_SQL_BYTES: usize = 1 << 20;

/// Parses one or more `;`-separated statements.
pub fn parse(sql: &str) -> Result<Vec<JobRequest>> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(Error::invalid(format!(
            "the SQL text is {} bytes; at most {MAX_SQL_BYTES} (1 MiB) is accepted",
            sql.len()
        )));
    }
    let dialect = DatabricksDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(sql)
        .map_err(|e| syntax(sql, e))?;
    let mut out = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token().token == Token::EOF {
            break;
        }
        // Past the first statement, say which one is at fault.
        let n = out.len() + 1;
        let head = word(&parser, 0).unwrap_or_default();
        out.push(statement(&mut parser).map_err(|e| {
            let e = match e {
                Parsed::Syntax(e) => syntax(sql, e),
                Parsed::Other(e) => e,
            };
            if n > 1 {
                Error::invalid(format!("statement {n} ({head} …): {e}"))
            } else {
                e
            }
        })?);
        if !parser.consume_token(&Token::SemiColon) && parser.peek_token().token != Token::EOF {
            let t = parser.peek_token();
            return Err(Error::invalid(format!(
                "syntax error at line {}, column {}: unexpected `{}` after the statement",
                t.span.start.line, t.span.start.column, t.token
            )));
        }
    }
    if out.is_empty() {
        return Err(Error::invalid("no SQL statement given"));
    }
    Ok(out)
}

/// Why a statement did not parse into a request.
enum Parsed {
    Syntax(ParserError),
    Other(Error),
}

impl From<ParserError> for Parsed {
    fn from(e: ParserError) -> Self {
        Parsed::Syntax(e)
    }
}

impl From<Error> for Parsed {
    fn from(e: Error) -> Self {
        Parsed::Other(e)
    }
}

fn syntax(_sql: &str, e: ParserError) -> Error {
    let msg = e.to_string();
    let msg = msg.strip_prefix("sql parser error: ").unwrap_or(&msg);
    Error::invalid(format!("syntax error: {msg}"))
}

fn unsupported(what: impl std::fmt::Display) -> Parsed {
    Parsed::Other(Error::invalid(format!("unsupported SQL: {what}")))
}

fn word(parser: &Parser, i: usize) -> Option<String> {
    match parser.peek_nth_token(i).token {
        Token::Word(w) => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

fn statement(parser: &mut Parser) -> std::result::Result<JobRequest, Parsed> {
    match word(parser, 0).as_deref() {
        Some("DESCRIBE") | Some("DESC")
            if matches!(word(parser, 1).as_deref(), Some("HISTORY") | Some("DETAIL")) =>
        {
            describe(parser)
        }
        Some("INSERT") => insert(parser),
        Some("MERGE") => Ok(JobRequest::Merge(merge::merge(parser)?)),
        Some("OPTIMIZE") => optimize(parser),
        Some("REORG") => reorg(parser),
        Some("VACUUM") => vacuum(parser),
        Some("ANALYZE") => analyze(parser),
        Some("ALTER") => alter(parser),
        _ => {
            let stmt = parser.parse_statement()?;
            match stmt {
                Statement::Delete(d) => delete(d),
                Statement::Update(u) => update(u),
                other => Err(unsupported(format!(
                    "`{}` (statements: DELETE, UPDATE, INSERT, MERGE, OPTIMIZE, REORG TABLE … APPLY (PURGE), VACUUM, ANALYZE TABLE, ALTER TABLE … SET/UNSET TBLPROPERTIES | RENAME COLUMN | DROP COLUMN, DESCRIBE HISTORY/DETAIL)",
                    first_line(&other.to_string())
                ))),
            }
        }
    }
}

fn first_line(s: &str) -> String {
    const MAX: usize = 200;
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > MAX {
        format!("{}…", one.chars().take(MAX).collect::<String>())
    } else {
        one
    }
}

/// `delta.\`URI\`` → the URI.
fn table_uri(name: &ObjectName) -> std::result::Result<String, Parsed> {
    match source_ref(name)? {
        (SourceFormat::Delta, uri) => Ok(uri),
        _ => Err(Parsed::Other(Error::invalid(format!(
            "tables are named delta.`URI`; `{name}` is not a Delta table"
        )))),
    }
}

/// `<format>.\`URI\`` → (format, URI).
fn source_ref(name: &ObjectName) -> std::result::Result<(SourceFormat, String), Parsed> {
    let parts: Vec<&Ident> = name
        .0
        .iter()
        .filter_map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(i),
            _ => None,
        })
        .collect();
    match parts.as_slice() {
        [format, uri] if uri.quote_style == Some('`') => {
            let format = SourceFormat::parse(&format.value).map_err(|_| {
                Parsed::Other(Error::invalid(format!(
                    "unknown format `{}` in `{name}` (expected delta, parquet, csv or json)",
                    format.value
                )))
            })?;
            if uri.value.trim().is_empty() {
                return Err(Parsed::Other(Error::invalid(format!(
                    "empty location in `{name}`"
                ))));
            }
            Ok((format, uri.value.clone()))
        }
        _ => Err(Parsed::Other(Error::invalid(format!(
            "unknown table `{name}`: silt has no catalog; name tables delta.`URI` and sources parquet.`URI`, csv.`URI`, json.`URI` or delta.`URI`"
        )))),
    }
}

/// SQL text of an expression with references qualified by `alias` unqualified.
fn expr_sql(mut expr: Expr, alias: Option<&str>) -> String {
    if let Some(alias) = alias {
        let _ = visit_expressions_mut(&mut expr, |e| {
            if let Expr::CompoundIdentifier(parts) = e
                && parts.len() >= 2
                && parts[0].value.eq_ignore_ascii_case(alias)
            {
                let rest: Vec<Ident> = parts[1..].to_vec();
                *e = if rest.len() == 1 {
                    Expr::Identifier(rest[0].clone())
                } else {
                    Expr::CompoundIdentifier(rest)
                };
            }
            ControlFlow::<()>::Continue(())
        });
    }
    expr.to_string()
}

fn single_table(factor: &TableFactor) -> std::result::Result<(String, Option<String>), Parsed> {
    match factor {
        TableFactor::Table {
            name,
            alias,
            version: None,
            args: None,
            ..
        } => Ok((
            table_uri(name)?,
            alias.as_ref().map(|a| a.name.value.clone()),
        )),
        other => Err(unsupported(format!("table `{other}`"))),
    }
}

fn delete(d: datafusion::sql::sqlparser::ast::Delete) -> std::result::Result<JobRequest, Parsed> {
    if d.using.is_some() || d.returning.is_some() || !d.order_by.is_empty() || d.limit.is_some() {
        return Err(unsupported(
            "DELETE with USING, RETURNING, ORDER BY or LIMIT",
        ));
    }
    let tables = match &d.from {
        FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
    };
    let [t] = tables.as_slice() else {
        return Err(unsupported("DELETE from several tables"));
    };
    if !t.joins.is_empty() {
        return Err(unsupported("DELETE with a join"));
    }
    let (table_uri, alias) = single_table(&t.relation)?;
    Ok(JobRequest::Delete(DeleteRequest {
        table_uri,
        predicate: d.selection.map(|e| expr_sql(e, alias.as_deref())),
        copy_on_write: false,
    }))
}

fn update(u: datafusion::sql::sqlparser::ast::Update) -> std::result::Result<JobRequest, Parsed> {
    if u.from.is_some() || u.returning.is_some() || !u.order_by.is_empty() || u.limit.is_some() {
        return Err(unsupported(
            "UPDATE with FROM, RETURNING, ORDER BY or LIMIT",
        ));
    }
    if !u.table.joins.is_empty() {
        return Err(unsupported("UPDATE with a join"));
    }
    let (table_uri, alias) = single_table(&u.table.relation)?;
    let mut assignments = Vec::new();
    for a in u.assignments {
        use datafusion::sql::sqlparser::ast::AssignmentTarget;
        let column = match &a.target {
            AssignmentTarget::ColumnName(name) => {
                let mut parts: Vec<String> = name
                    .0
                    .iter()
                    .filter_map(|p| match p {
                        ObjectNamePart::Identifier(i) => Some(i.value.clone()),
                        _ => None,
                    })
                    .collect();
                if parts.len() > 1
                    && alias
                        .as_deref()
                        .is_some_and(|al| parts[0].eq_ignore_ascii_case(al))
                {
                    parts.remove(0);
                }
                parts.join(".")
            }
            AssignmentTarget::Tuple(_) => {
                return Err(unsupported(format!("tuple assignment `{a}`")));
            }
        };
        assignments.push((column, expr_sql(a.value, alias.as_deref())));
    }
    Ok(JobRequest::Update(UpdateRequest {
        table_uri,
        assignments,
        predicate: u.selection.map(|e| expr_sql(e, alias.as_deref())),
        copy_on_write: false,
    }))
}

/// `OPTIMIZE delta.\`URI\` [WHERE <partition predicate>] [ZORDER BY (c1, c2, …)]`.
fn optimize(parser: &mut Parser) -> std::result::Result<JobRequest, Parsed> {
    parser.next_token(); // OPTIMIZE
    let (table_uri, predicate) = table_and_where(parser)?;
    let mut zorder_by = Vec::new();
    if matches!(word(parser, 0).as_deref(), Some("ZORDER")) {
        parser.next_token(); // ZORDER
        parser.expect_keyword(Keyword::BY)?;
        let parenthesized = parser.consume_token(&Token::LParen);
        loop {
            zorder_by.push(parser.parse_identifier()?.value);
            if !parser.consume_token(&Token::Comma) {
                break;
            }
        }
        if parenthesized {
            parser.expect_token(&Token::RParen)?;
        }
    }
    Ok(JobRequest::Optimize(crate::request::OptimizeRequest {
        table_uri,
        predicate,
        zorder_by,
        ..Default::default()
    }))
}

/// A table name and an optional `WHERE` condition (OPTIMIZE, REORG).
fn table_and_where(parser: &mut Parser) -> std::result::Result<(String, Option<String>), Parsed> {
    let name = parser.parse_object_name(false)?;
    let table_uri = table_uri(&name)?;
    let predicate = if parser.parse_keyword(Keyword::WHERE) {
        Some(parser.parse_expr()?.to_string())
    } else {
        None
    };
    Ok((table_uri, predicate))
}

/// `REORG TABLE delta.\`URI\` [WHERE <partition predicate>] APPLY (PURGE)`.
fn reorg(parser: &mut Parser) -> std::result::Result<JobRequest, Parsed> {
    parser.next_token(); // REORG
    parser.expect_keyword(Keyword::TABLE)?;
    let (table_uri, predicate) = table_and_where(parser)?;
    if !matches!(word(parser, 0).as_deref(), Some("APPLY")) {
        return Err(unsupported(
            "REORG TABLE without APPLY (PURGE) (silt does REORG TABLE … APPLY (PURGE) only)",
        ));
    }
    parser.next_token(); // APPLY
    parser.expect_token(&Token::LParen)?;
    if !matches!(word(parser, 0).as_deref(), Some("PURGE")) {
        return Err(unsupported(format!(
            "REORG TABLE … APPLY ({}) (silt does APPLY (PURGE) only)",
            parser.peek_token()
        )));
    }
    parser.next_token(); // PURGE
    parser.expect_token(&Token::RParen)?;
    Ok(JobRequest::Optimize(crate::request::OptimizeRequest {
        table_uri,
        predicate,
        purge: true,
        ..Default::default()
    }))
}

/// `VACUUM delta.\`URI\` [RETAIN n HOURS] [DRY RUN]`.
fn vacuum(parser: &mut Parser) -> std::result::Result<JobRequest, Parsed> {
    parser.next_token(); // VACUUM
    let name = parser.parse_object_name(false)?;
    let table_uri = table_uri(&name)?;
    let mut retain_hours = None;
    if matches!(word(parser, 0).as_deref(), Some("RETAIN")) {
        parser.next_token();
        let n = parser.parse_number_value()?.value.to_string();
        let hours: f64 = n
            .parse()
            .ok()
            .filter(|h: &f64| h.is_finite() && *h >= 0.0)
            .ok_or_else(|| unsupported(format!("`RETAIN {n} HOURS`: hours must be >= 0")))?;
        if !matches!(word(parser, 0).as_deref(), Some("HOURS") | Some("HOUR")) {
            return Err(unsupported(format!(
                "`RETAIN {n}` without HOURS (VACUUM … RETAIN n HOURS)"
            )));
        }
        parser.next_token();
        retain_hours = Some(hours);
    }
    let mut dry_run = false;
    if matches!(word(parser, 0).as_deref(), Some("DRY")) {
        parser.next_token();
        if !matches!(word(parser, 0).as_deref(), Some("RUN")) {
            return Err(unsupported("`DRY` without RUN (VACUUM … DRY RUN)"));
        }
        parser.next_token();
        dry_run = true;
    }
    Ok(JobRequest::Vacuum(crate::request::VacuumRequest {
        table_uri,
        retain_hours,
        dry_run,
        enforce_retention: true,
    }))
}

/// `ANALYZE TABLE delta.\`URI\` COMPUTE DELTA STATISTICS [FOR COLUMNS c1, c2 | (c1, c2)]`.
fn analyze(parser: &mut Parser) -> std::result::Result<JobRequest, Parsed> {
    parser.next_token(); // ANALYZE
    if !matches!(word(parser, 0).as_deref(), Some("TABLE")) {
        return Err(unsupported(
            "ANALYZE without TABLE (ANALYZE TABLE … COMPUTE DELTA STATISTICS)",
        ));
    }
    parser.next_token();
    let name = parser.parse_object_name(false)?;
    let table_uri = table_uri(&name)?;
    for expected in ["COMPUTE", "DELTA", "STATISTICS"] {
        if word(parser, 0).as_deref() != Some(expected) {
            return Err(unsupported(format!(
                "ANALYZE TABLE {table_uri} without `{expected}` (ANALYZE TABLE … COMPUTE DELTA STATISTICS [FOR COLUMNS …])"
            )));
        }
        parser.next_token();
    }
    let mut columns = Vec::new();
    if parser.parse_keyword(Keyword::FOR) {
        parser.expect_keyword(Keyword::COLUMNS)?;
        let parenthesized = parser.consume_token(&Token::LParen);
        loop {
            columns.push(parser.parse_identifier()?.value);
            if !parser.consume_token(&Token::Comma) {
                break;
            }
        }
        if parenthesized {
            parser.expect_token(&Token::RParen)?;
        }
    }
    Ok(JobRequest::Analyze(crate::request::AnalyzeRequest {
        table_uri,
        columns,
    }))
}

/// `DESCRIBE HISTORY <table> [LIMIT n]` | `DESCRIBE DETAIL <table>`.
fn describe(parser: &mut Parser) -> std::result::Result<JobRequest, Parsed> {
    parser.next_token(); // DESCRIBE | DESC
    let history = word(parser, 0).as_deref() == Some("HISTORY");
    parser.next_token(); // HISTORY | DETAIL
    let name = parser.parse_object_name(false)?;
    let table_uri = table_uri(&name)?;
    let kind = if history {
        let limit = if parser.parse_keyword(Keyword::LIMIT) {
            Some(
                u32::try_from(parser.parse_literal_uint()?)
                    .map_err(|_| Parsed::Other(Error::invalid("LIMIT is too large")))?,
            )
        } else {
            None
        };
        DescribeKind::History { limit }
    } else {
        DescribeKind::Detail
    };
    Ok(JobRequest::Describe(DescribeRequest { table_uri, kind }))
}

/// `ALTER TABLE <table> SET TBLPROPERTIES (k = v, …)` |
/// `ALTER TABLE <table> UNSET TBLPROPERTIES [IF EXISTS] (k, …)`.
fn alter(parser: &mut Parser) -> std::result::Result<JobRequest, Parsed> {
    parser.expect_keyword(Keyword::ALTER)?;
    parser.expect_keyword(Keyword::TABLE)?;
    let name = parser.parse_object_name(false)?;
    let table_uri = table_uri(&name)?;
    let mut req = AlterTableRequest {
        table_uri,
        set: BTreeMap::new(),
        unset: Vec::new(),
        if_exists: false,
        column: None,
    };
    if parser.parse_keywords(&[Keyword::SET, Keyword::TBLPROPERTIES]) {
        parser.expect_token(&Token::LParen)?;
        let pairs = parser.parse_comma_separated(|p| {
            let key = property_key(p)?;
            let _ = p.consume_token(&Token::Eq);
            let value = property_value(p)?;
            Ok((key, value))
        })?;
        parser.expect_token(&Token::RParen)?;
        for (k, v) in pairs {
            if req.set.insert(k.clone(), v).is_some() {
                return Err(Parsed::Other(Error::invalid(format!(
                    "table property `{k}` is given twice"
                ))));
            }
        }
    } else if parser.parse_keywords(&[Keyword::UNSET, Keyword::TBLPROPERTIES]) {
        req.if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        parser.expect_token(&Token::LParen)?;
        req.unset = parser.parse_comma_separated(property_key)?;
        parser.expect_token(&Token::RParen)?;
    } else if parser.parse_keywords(&[Keyword::RENAME, Keyword::COLUMN]) {
        let from = column_name(parser)?;
        parser.expect_keyword(Keyword::TO)?;
        let to = column_name(parser)?;
        req.column = Some(ColumnChange::Rename { from, to });
    } else if parser.parse_keyword(Keyword::DROP) {
        if !parser.parse_keyword(Keyword::COLUMNS) {
            parser.expect_keyword(Keyword::COLUMN)?;
        }
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let columns = if parser.consume_token(&Token::LParen) {
            let c = parser.parse_comma_separated(column_name)?;
            parser.expect_token(&Token::RParen)?;
            c
        } else {
            parser.parse_comma_separated(column_name)?
        };
        req.column = Some(ColumnChange::Drop { columns, if_exists });
    } else {
        let rest = parser.peek_token();
        return Err(unsupported(format!(
            "ALTER TABLE … {} (supported: SET TBLPROPERTIES, UNSET TBLPROPERTIES, RENAME COLUMN, DROP COLUMN)",
            rest.token
        )));
    }
    Ok(JobRequest::AlterTable(req))
}

/// A column name, or the dotted path of a field nested in struct columns (`a.b.c`).
fn column_name(p: &mut Parser) -> std::result::Result<String, ParserError> {
    let mut name = p.parse_identifier()?.value;
    while p.peek_token().token == Token::Period {
        p.next_token();
        name.push('.');
        name.push_str(&p.parse_identifier()?.value);
    }
    Ok(name)
}

fn property_key(p: &mut Parser) -> std::result::Result<String, ParserError> {
    if let Token::SingleQuotedString(s) = p.peek_token().token {
        p.next_token();
        return Ok(s);
    }
    let name = p.parse_object_name(false)?;
    Ok(name
        .0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join("."))
}

fn property_value(p: &mut Parser) -> std::result::Result<String, ParserError> {
    let t = p.next_token();
    match t.token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Ok(s),
        Token::Number(n, _) => Ok(n),
        Token::Word(w) => Ok(w.value),
        Token::Minus => match p.next_token().token {
            Token::Number(n, _) => Ok(format!("-{n}")),
            other => Err(ParserError::ParserError(format!(
                "expected a property value, found {other}"
            ))),
        },
        other => Err(ParserError::ParserError(format!(
            "expected a property value, found {other}"
        ))),
    }
}

/// `INSERT INTO|OVERWRITE [TABLE] <table> [PARTITION (p [= v], …)] [REPLACE WHERE cond]
/// SELECT * FROM <source>`.
fn insert(parser: &mut Parser) -> std::result::Result<JobRequest, Parsed> {
    parser.expect_keyword(Keyword::INSERT)?;
    let overwrite =
        parser.expect_one_of_keywords(&[Keyword::INTO, Keyword::OVERWRITE])? == Keyword::OVERWRITE;
    let _ = parser.parse_keyword(Keyword::TABLE);
    let name = parser.parse_object_name(false)?;
    let table_uri = table_uri(&name)?;
    let mut static_parts: Vec<(String, String)> = Vec::new();
    let mut dynamic_parts: Vec<String> = Vec::new();
    if parser.parse_keyword(Keyword::PARTITION) {
        parser.expect_token(&Token::LParen)?;
        let specs = parser.parse_comma_separated(|p| {
            let col = p.parse_identifier()?;
            let value = if p.consume_token(&Token::Eq) {
                Some(p.parse_expr()?)
            } else {
                None
            };
            Ok((col, value))
        })?;
        parser.expect_token(&Token::RParen)?;
        for (col, value) in specs {
            match value {
                Some(v) => static_parts.push((col.value, v.to_string())),
                None => dynamic_parts.push(col.value),
            }
        }
    }
    let replace_where = if parser.parse_keywords(&[Keyword::REPLACE, Keyword::WHERE]) {
        Some(parser.parse_expr()?.to_string())
    } else {
        None
    };
    let query = parser.parse_query()?;
    let (format, source_uri, source_version) = insert_source(&query)?;
    if replace_where.is_some() && (!static_parts.is_empty() || !dynamic_parts.is_empty()) {
        return Err(unsupported(
            "REPLACE WHERE together with a PARTITION clause",
        ));
    }
    if !static_parts.is_empty() && !dynamic_parts.is_empty() {
        return Err(unsupported(
            "a PARTITION clause mixing static (p = v) and dynamic (p) columns",
        ));
    }
    if replace_where.is_some() && overwrite {
        return Err(unsupported(
            "INSERT OVERWRITE … REPLACE WHERE (Delta's syntax is INSERT INTO … REPLACE WHERE)",
        ));
    }
    let mut req = WriteRequest::append(&table_uri, &source_uri);
    req.format = format;
    req.source_version = source_version;
    if overwrite || replace_where.is_some() {
        req.mode = WriteMode::Overwrite;
    }
    req.replace_where = replace_where;
    if !dynamic_parts.is_empty() {
        if !overwrite {
            return Err(unsupported(
                "INSERT INTO … PARTITION (p) without values (dynamic partitions are for INSERT OVERWRITE)",
            ));
        }
        req.dynamic_partition_overwrite = true;
    }
    if !static_parts.is_empty() {
        // The rows go to the named partition: they must carry these values; an overwrite
        // replaces just that partition.
        let cond = static_parts
            .iter()
            .map(|(c, v)| format!("{} = {v}", quote(c)))
            .collect::<Vec<_>>()
            .join(" AND ");
        if overwrite {
            req.replace_where = Some(cond);
        }
        req.static_partitions = static_parts;
    }
    Ok(JobRequest::Write(req))
}

fn quote(column: &str) -> String {
    format!("\"{}\"", column.replace('"', "\"\""))
}

/// `SELECT * FROM <format>.\`URI\` [VERSION AS OF n | TIMESTAMP AS OF 'ts']`.
fn insert_source(query: &Query) -> std::result::Result<(SourceFormat, String, TimeTravel), Parsed> {
    let bad = || {
        unsupported(format!(
            "INSERT source `{}` (only SELECT * FROM <format>.`URI`)",
            first_line(&query.to_string())
        ))
    };
    if query.with.is_some()
        || query.order_by.is_some()
        || query.limit_clause.is_some()
        || query.fetch.is_some()
    {
        return Err(bad());
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Err(bad());
    };
    if select.selection.is_some()
        || select.distinct.is_some()
        || select.having.is_some()
        || !matches!(select.projection.as_slice(), [SelectItem::Wildcard(_)])
    {
        return Err(bad());
    }
    let [from] = select.from.as_slice() else {
        return Err(bad());
    };
    if !from.joins.is_empty() {
        return Err(bad());
    }
    let TableFactor::Table { name, version, .. } = &from.relation else {
        return Err(bad());
    };
    let (format, uri) = source_ref(name)?;
    let travel = time_travel(format, version.as_ref())?;
    Ok((format, uri, travel))
}

/// `VERSION AS OF n` / `TIMESTAMP AS OF '…'` of a source (Delta sources only).
fn time_travel(
    format: SourceFormat,
    version: Option<&TableVersion>,
) -> std::result::Result<TimeTravel, Parsed> {
    Ok(match version {
        None => TimeTravel::Latest,
        Some(v) if format != SourceFormat::Delta => {
            return Err(unsupported(format!("{v} on a {} source", format.as_str())));
        }
        Some(TableVersion::VersionAsOf(e)) => TimeTravel::Version(
            literal_text(e)
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| unsupported(format!("VERSION AS OF {e} (expected a number)")))?,
        ),
        Some(TableVersion::TimestampAsOf(e)) | Some(TableVersion::ForSystemTimeAsOf(e)) => {
            let text = literal_text(e)
                .ok_or_else(|| unsupported(format!("TIMESTAMP AS OF {e} (expected a literal)")))?;
            TimeTravel::Timestamp(parse_timestamp(&text).ok_or_else(|| {
                Parsed::Other(Error::invalid(format!(
                    "TIMESTAMP AS OF '{text}' is not a timestamp (e.g. '2024-01-31 12:00:00')"
                )))
            })?)
        }
        Some(other) => return Err(unsupported(format!("{other}"))),
    })
}

fn literal_text(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(ValueWithSpan { value, .. }) => match value {
            Value::Number(n, _) => Some(n.clone()),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// `YYYY-MM-DD[ HH:MM:SS[.f]]` (UTC) or RFC 3339.
fn parse_timestamp(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> JobRequest {
        let mut v = parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    fn err(sql: &str) -> String {
        parse(sql).unwrap_err().to_string()
    }

    #[test]
    fn overlong_text_is_refused_before_parsing() {
        let long = format!(
            "DELETE FROM delta.`/t` WHERE a IN ({}1)",
            "1, ".repeat(MAX_SQL_BYTES / 3)
        );
        let e = err(&long);
        assert!(e.contains("at most 1048576 (1 MiB)"), "{e}");
        // Deep nesting is the parser's error, not a crash.
        let deep = format!(
            "DELETE FROM delta.`/t` WHERE {}a = 1{}",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        assert!(!err(&deep).is_empty());
    }

    #[test]
    fn delete_and_update() {
        assert_eq!(
            one("DELETE FROM delta.`/t/x` WHERE a > 1 AND s = 'q''s'"),
            JobRequest::Delete(DeleteRequest {
                table_uri: "/t/x".into(),
                predicate: Some("a > 1 AND s = 'q''s'".into()),
                copy_on_write: false,
            })
        );
        assert_eq!(
            one("delete from delta.`s3://b/t` as t where t.a is null"),
            JobRequest::Delete(DeleteRequest {
                table_uri: "s3://b/t".into(),
                predicate: Some("a IS NULL".into()),
                copy_on_write: false,
            })
        );
        assert_eq!(
            one("DELETE FROM delta.`/t`"),
            JobRequest::Delete(DeleteRequest {
                table_uri: "/t".into(),
                predicate: None,
                copy_on_write: false,
            })
        );
        assert_eq!(
            one("UPDATE delta.`/t` t SET t.a = a + 1, `b c` = upper(s) WHERE t.p = 'x'"),
            JobRequest::Update(UpdateRequest {
                table_uri: "/t".into(),
                assignments: vec![
                    ("a".into(), "a + 1".into()),
                    ("b c".into(), "upper(s)".into())
                ],
                predicate: Some("p = 'x'".into()),
                copy_on_write: false,
            })
        );
    }

    #[test]
    fn inserts_map_onto_writes() {
        let JobRequest::Write(w) = one("INSERT INTO delta.`/t` SELECT * FROM parquet.`/s`") else {
            panic!()
        };
        assert_eq!(
            (w.mode, w.format, w.source_uri.as_str()),
            (WriteMode::Append, SourceFormat::Parquet, "/s")
        );
        let JobRequest::Write(w) = one("INSERT OVERWRITE TABLE delta.`/t` SELECT * FROM csv.`/s`")
        else {
            panic!()
        };
        assert_eq!(
            (w.mode, w.format),
            (WriteMode::Overwrite, SourceFormat::Csv)
        );
        let JobRequest::Write(w) = one(
            "INSERT INTO delta.`/t` REPLACE WHERE d >= '2024-01-01' SELECT * FROM delta.`/s` VERSION AS OF 3",
        ) else {
            panic!()
        };
        assert_eq!(w.mode, WriteMode::Overwrite);
        assert_eq!(w.replace_where.as_deref(), Some("d >= '2024-01-01'"));
        assert_eq!(w.source_version, TimeTravel::Version(3));
        let JobRequest::Write(w) =
            one("INSERT OVERWRITE delta.`/t` PARTITION (p) SELECT * FROM json.`/s`")
        else {
            panic!()
        };
        assert!(w.dynamic_partition_overwrite);
        let JobRequest::Write(w) = one(
            "INSERT OVERWRITE delta.`/t` PARTITION (p = 'a', q = 2) SELECT * FROM parquet.`/s`",
        ) else {
            panic!()
        };
        assert_eq!(
            w.replace_where.as_deref(),
            Some("\"p\" = 'a' AND \"q\" = 2")
        );
        assert_eq!(
            w.static_partitions,
            vec![
                ("p".to_string(), "'a'".to_string()),
                ("q".to_string(), "2".to_string())
            ]
        );
        let JobRequest::Write(w) = one(
            "INSERT INTO delta.`/t` SELECT * FROM delta.`/s` TIMESTAMP AS OF '2024-01-02 03:04:05'",
        ) else {
            panic!()
        };
        assert_eq!(
            w.source_version,
            TimeTravel::Timestamp(parse_timestamp("2024-01-02T03:04:05Z").unwrap())
        );
    }

    #[test]
    fn properties_and_describe() {
        assert_eq!(
            one(
                "ALTER TABLE delta.`/t` SET TBLPROPERTIES ('delta.appendOnly' = 'true', owner.team = eng, n = 5)"
            ),
            JobRequest::AlterTable(AlterTableRequest {
                table_uri: "/t".into(),
                set: BTreeMap::from([
                    ("delta.appendOnly".to_string(), "true".to_string()),
                    ("owner.team".to_string(), "eng".to_string()),
                    ("n".to_string(), "5".to_string()),
                ]),
                unset: vec![],
                if_exists: false,
                column: None,
            })
        );
        assert_eq!(
            one("ALTER TABLE delta.`/t` UNSET TBLPROPERTIES IF EXISTS ('a', b.c)"),
            JobRequest::AlterTable(AlterTableRequest {
                table_uri: "/t".into(),
                set: BTreeMap::new(),
                unset: vec!["a".into(), "b.c".into()],
                if_exists: true,
                column: None,
            })
        );
        let column = |sql: &str| match one(sql) {
            JobRequest::AlterTable(r) => r.column,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            column("ALTER TABLE delta.`/t` RENAME COLUMN `a b` TO c"),
            Some(ColumnChange::Rename {
                from: "a b".into(),
                to: "c".into()
            })
        );
        assert_eq!(
            column("ALTER TABLE delta.`/t` DROP COLUMNS IF EXISTS (a, `b`)"),
            Some(ColumnChange::Drop {
                columns: vec!["a".into(), "b".into()],
                if_exists: true
            })
        );
        assert_eq!(
            column("alter table delta.`/t` drop column a"),
            Some(ColumnChange::Drop {
                columns: vec!["a".into()],
                if_exists: false
            })
        );
        assert_eq!(
            one("DESCRIBE HISTORY delta.`/t` LIMIT 3"),
            JobRequest::Describe(DescribeRequest {
                table_uri: "/t".into(),
                kind: DescribeKind::History { limit: Some(3) },
            })
        );
        assert_eq!(
            one("desc detail delta.`/t`"),
            JobRequest::Describe(DescribeRequest {
                table_uri: "/t".into(),
                kind: DescribeKind::Detail,
            })
        );
    }

    #[test]
    fn reorg_purge() {
        assert_eq!(
            one("REORG TABLE delta.`/t` WHERE p = 1 APPLY (PURGE)"),
            JobRequest::Optimize(crate::request::OptimizeRequest {
                table_uri: "/t".into(),
                predicate: Some("p = 1".into()),
                purge: true,
                ..Default::default()
            })
        );
        let e = parse("REORG TABLE delta.`/t` APPLY (UPGRADE UNIFORM)")
            .unwrap_err()
            .to_string();
        assert!(e.contains("APPLY (PURGE) only"), "{e}");
    }

    #[test]
    fn optimize_with_and_without_zorder() {
        let v = parse(
            "OPTIMIZE delta.`/t` WHERE p = 1 ZORDER BY (a, `b c`); OPTIMIZE delta.`/t` ZORDER BY a; \
             OPTIMIZE delta.`/t`",
        )
        .unwrap();
        let reqs: Vec<_> = v
            .into_iter()
            .map(|r| match r {
                JobRequest::Optimize(o) => (o.predicate, o.zorder_by),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            reqs,
            vec![
                (Some("p = 1".into()), vec!["a".into(), "b c".into()]),
                (None, vec!["a".into()]),
                (None, vec![]),
            ]
        );
        assert!(err("OPTIMIZE delta.`/t` ZORDER (a)").contains("BY"));
        assert!(err("OPTIMIZE delta.`/t` ZORDER BY (a").contains(")"));
    }

    #[test]
    fn vacuum_with_retention_and_dry_run() {
        let v = parse(
            "VACUUM delta.`/t`; VACUUM delta.`/t` RETAIN 0 HOURS DRY RUN; VACUUM delta.`/t` RETAIN 1.5 HOURS",
        )
        .unwrap();
        let got: Vec<_> = v
            .into_iter()
            .map(|r| match r {
                JobRequest::Vacuum(v) => (v.retain_hours, v.dry_run),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            vec![(None, false), (Some(0.0), true), (Some(1.5), false)]
        );
        assert!(err("VACUUM delta.`/t` RETAIN 3").contains("HOURS"));
        assert!(err("VACUUM delta.`/t` DRY").contains("RUN"));
    }

    #[test]
    fn analyze_with_and_without_columns() {
        let v = parse(
            "ANALYZE TABLE delta.`/t` COMPUTE DELTA STATISTICS; \
             ANALYZE TABLE delta.`/t` COMPUTE DELTA STATISTICS FOR COLUMNS a, `b c`",
        )
        .unwrap();
        let cols: Vec<Vec<String>> = v
            .into_iter()
            .map(|r| match r {
                JobRequest::Analyze(a) => a.columns,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(cols, vec![vec![], vec!["a".to_string(), "b c".to_string()]]);
        assert!(err("ANALYZE TABLE delta.`/t` COMPUTE STATISTICS").contains("DELTA"));
    }

    #[test]
    fn several_statements() {
        let v =
            parse("DELETE FROM delta.`/t` WHERE a = 1; ;\nDESCRIBE DETAIL delta.`/t`;").unwrap();
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn errors_quote_the_problem() {
        assert!(err("DELETE FROM t WHERE a = 1").contains("unknown table `t`"));
        assert!(err("DELETE FROM delta.`/t` WHERE").contains("syntax error"));
        assert!(err("SELECT * FROM delta.`/t`").contains("unsupported SQL: `SELECT * FROM"));
        assert!(err("CREATE TABLE x (a INT)").contains("unsupported SQL: `CREATE TABLE x"));
        assert!(
            err("INSERT INTO delta.`/t` SELECT a FROM parquet.`/s`")
                .contains("INSERT source `SELECT a FROM parquet.`/s``")
        );
        assert!(
            err("INSERT INTO delta.`/t` SELECT * FROM orc.`/s`").contains("unknown format `orc`")
        );
        assert!(err("ALTER TABLE delta.`/t` ADD COLUMN x INT").contains("ALTER TABLE"));
        assert!(err("DELETE FROM delta.`/t` WHERE a = 1 garbage").contains("syntax error"));
        assert!(err("   ").contains("no SQL statement"));
        assert!(
            err("INSERT INTO delta.`/t` SELECT * FROM parquet.`/s` VERSION AS OF 1")
                .contains("on a parquet source")
        );
    }
}
