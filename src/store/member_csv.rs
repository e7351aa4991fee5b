//! Members as CSV for `lanehub members import|export`: RFC 4180 via the `csv` crate, UTF-8.
//!
//! Columns: phone_number,name,email,consents,enrolled_at,enrolled_lane,source. `consents` is a
//! JSON array of {id, accepted, required, text}. Reading validates every row and reports every
//! problem with its line and column; it never echoes a phone number in full.

use std::collections::HashMap;
use std::io;

use chrono::{DateTime, Utc};

use super::format_time;
use super::members::{Consent, Member, MemberSource, check_consents, check_email, check_name};
use crate::domain::{Msisdn, mask_phone};

/// The header of a members file, in the order export writes it.
pub const CSV_COLUMNS: [&str; 7] = [
    "phone_number",
    "name",
    "email",
    "consents",
    "enrolled_at",
    "enrolled_lane",
    "source",
];

/// How many row problems an error lists before summarising the rest.
const MAX_LISTED_PROBLEMS: usize = 20;

/// One invalid cell or row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    pub line: u64,
    /// The column at fault, or `None` for the whole row.
    pub column: Option<&'static str>,
    pub message: String,
}

impl std::fmt::Display for RowProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.column {
            Some(c) => write!(f, "line {}, column {c}: {}", self.line, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

/// Why a members file was not read or written.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// A row is not CSV this reader accepts (bad UTF-8, another number of fields).
    #[error("line {line}: {message}")]
    Malformed { line: u64, message: String },
    /// The file could not be read.
    #[error("cannot read CSV: {0}")]
    Read(csv::Error),
    /// The header does not name the expected columns.
    #[error("line 1 (header): {0}")]
    Header(String),
    /// One or more rows are invalid; nothing was imported.
    #[error("{} invalid, nothing was imported:\n{}", plural(.0.len()), list(.0))]
    Rows(Vec<RowProblem>),
    /// Writing failed.
    #[error("cannot write CSV: {0}")]
    Write(csv::Error),
}

impl CsvError {
    /// A short, bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CsvError::Malformed { .. } => "malformed",
            CsvError::Read(_) => "read",
            CsvError::Header(_) => "header",
            CsvError::Rows(_) => "rows",
            CsvError::Write(_) => "write",
        }
    }
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 row is".to_owned()
    } else {
        format!("{n} rows are")
    }
}

fn list(problems: &[RowProblem]) -> String {
    let mut lines: Vec<String> = problems
        .iter()
        .take(MAX_LISTED_PROBLEMS)
        .map(|p| format!("  {p}"))
        .collect();
    if problems.len() > MAX_LISTED_PROBLEMS {
        lines.push(format!(
            "  … and {} more",
            problems.len() - MAX_LISTED_PROBLEMS
        ));
    }
    lines.join("\n")
}

/// Reads and validates a members file. Empty optional cells default: `consents` to `[]`,
/// `enrolled_at` to `now`, `enrolled_lane` to none, `source` to `import`.
pub fn read_members<R: io::Read>(reader: R, now: DateTime<Utc>) -> Result<Vec<Member>, CsvError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let header = reader.headers().map_err(read_error)?.clone();
    let index = column_index(&header)?;

    let mut members = Vec::new();
    let mut problems = Vec::new();
    let mut first_line: HashMap<Msisdn, u64> = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(read_error)?;
        let line = record.position().map_or(0, |p| p.line());
        match parse_row(line, &record, &index, now) {
            Ok(member) => {
                if let Some(first) = first_line.get(&member.phone_number) {
                    problems.push(RowProblem {
                        line,
                        column: Some("phone_number"),
                        message: format!(
                            "{} already appears on line {first}",
                            mask_phone(member.phone_number.as_str())
                        ),
                    });
                } else {
                    first_line.insert(member.phone_number.clone(), line);
                    members.push(member);
                }
            }
            Err(mut row) => problems.append(&mut row),
        }
    }
    if problems.is_empty() {
        Ok(members)
    } else {
        Err(CsvError::Rows(problems))
    }
}

fn read_error(e: csv::Error) -> CsvError {
    let line = |pos: &Option<csv::Position>| pos.as_ref().map_or(0, csv::Position::line);
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => CsvError::Malformed {
            line: line(pos),
            message: format!("expected {expected_len} fields like the header, found {len}"),
        },
        csv::ErrorKind::Utf8 { pos, err } => CsvError::Malformed {
            line: line(pos),
            message: format!("not UTF-8 text (field {})", err.field() + 1),
        },
        _ => CsvError::Read(e),
    }
}

fn column_index(header: &csv::StringRecord) -> Result<HashMap<&'static str, usize>, CsvError> {
    let mut index = HashMap::new();
    for (i, name) in header.iter().enumerate() {
        let Some(known) = CSV_COLUMNS.iter().find(|c| **c == name) else {
            return Err(CsvError::Header(format!(
                "unknown column `{name}`; expected {}",
                CSV_COLUMNS.join(",")
            )));
        };
        if index.insert(*known, i).is_some() {
            return Err(CsvError::Header(format!("column `{name}` appears twice")));
        }
    }
    let missing: Vec<&str> = CSV_COLUMNS
        .iter()
        .filter(|c| !index.contains_key(*c))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(CsvError::Header(format!(
            "missing column(s) {}; expected {}",
            missing.join(", "),
            CSV_COLUMNS.join(",")
        )));
    }
    Ok(index)
}

fn parse_row(
    line: u64,
    record: &csv::StringRecord,
    index: &HashMap<&'static str, usize>,
    now: DateTime<Utc>,
) -> Result<Member, Vec<RowProblem>> {
    let cell = |column: &'static str| {
        index
            .get(column)
            .and_then(|&i| record.get(i))
            .unwrap_or_default()
    };
    let mut problems = Vec::new();
    let mut check = |column: &'static str, r: Result<(), String>| {
        if let Err(message) = r {
            problems.push(RowProblem {
                line,
                column: Some(column),
                message,
            });
        }
    };

    let phone = cell("phone_number").parse::<Msisdn>();
    check(
        "phone_number",
        phone.as_ref().map(|_| ()).map_err(ToString::to_string),
    );
    let name = cell("name");
    check("name", check_name(name));
    let email = cell("email");
    check("email", check_email(email));
    let consents = match cell("consents") {
        "" => Ok(Vec::new()),
        raw => serde_json::from_str::<Vec<Consent>>(raw).map_err(|e| {
            format!("expected a JSON array of {{id, accepted, required, text}} ({e})")
        }),
    };
    check(
        "consents",
        consents
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|c| check_consents(c)),
    );
    let enrolled_at = match cell("enrolled_at") {
        "" => Ok(now),
        raw => DateTime::parse_from_rfc3339(raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("expected an RFC 3339 time like 2024-05-01T10:00:00Z ({e})")),
    };
    check(
        "enrolled_at",
        enrolled_at.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    let lane = match cell("enrolled_lane") {
        "" => Ok(None),
        raw => raw
            .parse::<crate::domain::LaneId>()
            .map(Some)
            .map_err(|e| e.to_string()),
    };
    check(
        "enrolled_lane",
        lane.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    let source = match cell("source") {
        "" => Ok(MemberSource::Import),
        raw => raw.parse::<MemberSource>().map_err(|e| e.to_string()),
    };
    check("source", source.as_ref().map(|_| ()).map_err(Clone::clone));

    match (phone, consents, enrolled_at, lane, source) {
        (Ok(phone_number), Ok(consents), Ok(enrolled_at), Ok(enrolled_lane), Ok(source))
            if problems.is_empty() =>
        {
            Ok(Member {
                phone_number,
                name: name.to_owned(),
                email: email.to_owned(),
                consents,
                enrolled_at,
                enrolled_lane,
                source,
            })
        }
        _ => Err(problems),
    }
}

/// Writes `members` with the header, quoting only where RFC 4180 needs it.
pub fn write_members<W: io::Write>(writer: W, members: &[Member]) -> Result<(), CsvError> {
    let mut out = csv::Writer::from_writer(writer);
    out.write_record(CSV_COLUMNS).map_err(CsvError::Write)?;
    for m in members {
        let consents = serde_json::to_string(&m.consents)
            .map_err(|e| CsvError::Write(csv::Error::from(io::Error::other(e))))?;
        out.write_record([
            m.phone_number.as_str(),
            &m.name,
            &m.email,
            &consents,
            &format_time(&m.enrolled_at),
            m.enrolled_lane.as_ref().map_or("", |l| l.as_str()),
            m.source.as_str(),
        ])
        .map_err(CsvError::Write)?;
    }
    out.flush()
        .map_err(|e| CsvError::Write(csv::Error::from(e)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::members::tests::member;

    fn now() -> DateTime<Utc> {
        "2025-01-02T03:04:05Z".parse().unwrap()
    }

    #[test]
    fn round_trip_keeps_commas_quotes_and_non_ascii() {
        let mut a = member("4791234567", "Bjørn Ærø, \"Bamse\"");
        a.consents[0].text = "Ja, takk – \"alt\"\nny linje".into();
        let b = Member {
            email: String::new(),
            consents: vec![],
            enrolled_lane: None,
            source: MemberSource::Import,
            ..member("4512345678", "Åse")
        };
        let mut buf = Vec::new();
        write_members(&mut buf, &[a.clone(), b.clone()]).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(
            text.starts_with("phone_number,name,email,consents,enrolled_at,enrolled_lane,source\n")
        );
        assert!(text.contains("\"Bjørn Ærø, \"\"Bamse\"\"\""), "{text}");
        assert_eq!(read_members(&buf[..], now()).unwrap(), vec![a, b]);
    }

    #[test]
    fn empty_optional_cells_take_defaults_and_columns_may_be_reordered() {
        let text = "source,enrolled_lane,enrolled_at,consents,email,name,phone_number\n\
                    ,,,,,Kari,+4791234567\n";
        let m = read_members(text.as_bytes(), now()).unwrap().remove(0);
        assert_eq!(m.phone_number.as_str(), "4791234567");
        assert_eq!(m.enrolled_at, now());
        assert_eq!(m.source, MemberSource::Import);
        assert!(m.consents.is_empty() && m.enrolled_lane.is_none());
    }

    #[test]
    fn every_bad_cell_is_named_by_line_and_column() {
        let text = "phone_number,name,email,consents,enrolled_at,enrolled_lane,source\n\
                    4798765432,Kari,kari@example.no,,,,\n\
                    47912,Ola,ola@example.no,,,,\n\
                    4791234568,Per,not-an-address,[{\"id\":1}],yesterday,lane 1,shop\n\
                    4798765432,Kari again,,,,,\n";
        let CsvError::Rows(problems) = read_members(text.as_bytes(), now()).unwrap_err() else {
            panic!("expected row problems");
        };
        let named: Vec<(u64, Option<&str>)> = problems.iter().map(|p| (p.line, p.column)).collect();
        assert_eq!(
            named,
            vec![
                (3, Some("phone_number")),
                (4, Some("email")),
                (4, Some("consents")),
                (4, Some("enrolled_at")),
                (4, Some("enrolled_lane")),
                (4, Some("source")),
                (5, Some("phone_number")),
            ]
        );
        let message = CsvError::Rows(problems).to_string();
        assert!(message.starts_with("7 rows are invalid"), "{message}");
        assert!(message.contains("line 3, column phone_number: invalid phone number"));
        assert!(
            message.contains("47******32 already appears on line 2"),
            "{message}"
        );
        assert!(
            !message.contains("4798765432"),
            "a full phone number leaked: {message}"
        );
    }

    #[test]
    fn bad_headers_and_ragged_rows_are_refused() {
        let err = read_members("phone_number,name\n".as_bytes(), now()).unwrap_err();
        assert_eq!(err.kind(), "header");
        assert!(err.to_string().contains("missing column(s) email"), "{err}");
        let err = read_members(
            "phone_number,name,email,consents,enrolled_at,enrolled_lane,source,extra\n".as_bytes(),
            now(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown column `extra`"), "{err}");
        let text =
            "phone_number,name,email,consents,enrolled_at,enrolled_lane,source\n4791234567,a\n";
        let err = read_members(text.as_bytes(), now()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: expected 7 fields like the header, found 2"
        );
        let mut latin1 = b"phone_number,name,email,consents,enrolled_at,enrolled_lane,source\n\
                           4791234567,Bj"
            .to_vec();
        latin1.extend_from_slice(b"\xf8rn,,,,,\n");
        let err = read_members(&latin1[..], now()).unwrap_err();
        assert_eq!(err.to_string(), "line 2: not UTF-8 text (field 2)");
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let text = "\u{feff}phone_number,name,email,consents,enrolled_at,enrolled_lane,source\n\
                    4791234567,Kari,,,,,\n";
        assert_eq!(read_members(text.as_bytes(), now()).unwrap().len(), 1);
    }
}
