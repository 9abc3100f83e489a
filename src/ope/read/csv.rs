//! A small CSV reader (RFC 4180: commas, quoted fields with `""` escapes and
//! embedded newlines, CRLF), shared by the OBP log reader and the policy-file
//! parser. It knows lines and columns so every error can name them; it
//! knows nothing about what the columns mean.

use super::parse_error;
use crate::ope::OpeError;

/// One CSV record and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CsvRecord {
    pub line: usize,
    pub fields: Vec<String>,
}

/// Splits CSV text into records. Blank lines are skipped; a quote inside an
/// unquoted field, text after a closing quote or an unterminated quote is an
/// error naming the line.
pub(crate) fn csv_records(text: &str, file: &str) -> Result<Vec<CsvRecord>, OpeError> {
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut blank = true;
        loop {
            match chars.next() {
                None => {
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some('\n') => {
                    fields.push(std::mem::take(&mut field));
                    line += 1;
                    break;
                }
                Some('\r') if chars.peek() == Some(&'\n') => {}
                Some(',') => {
                    blank = false;
                    fields.push(std::mem::take(&mut field));
                }
                Some('"') if field.is_empty() => {
                    blank = false;
                    loop {
                        match chars.next() {
                            None => {
                                return Err(parse_error(
                                    file,
                                    start,
                                    Some(format!("column {}", fields.len() + 1)),
                                    "unterminated quoted field".to_string(),
                                ))
                            }
                            Some('"') if chars.peek() == Some(&'"') => {
                                chars.next();
                                field.push('"');
                            }
                            Some('"') => break,
                            Some(c) => {
                                if c == '\n' {
                                    line += 1;
                                }
                                field.push(c);
                            }
                        }
                    }
                    match chars.peek() {
                        None | Some(',') | Some('\n') | Some('\r') => {}
                        Some(_) => {
                            return Err(parse_error(
                                file,
                                line,
                                Some(format!("column {}", fields.len() + 1)),
                                "text after a closing quote".to_string(),
                            ))
                        }
                    }
                }
                Some('"') => {
                    return Err(parse_error(
                        file,
                        line,
                        Some(format!("column {}", fields.len() + 1)),
                        "a quote inside an unquoted field".to_string(),
                    ))
                }
                Some(c) => {
                    if !c.is_whitespace() {
                        blank = false;
                    }
                    field.push(c);
                }
            }
        }
        if !blank {
            records.push(CsvRecord {
                line: start,
                fields,
            });
        }
    }
    Ok(records)
}

/// A CSV file's header and rows, with typed, located field access.
#[derive(Debug)]
pub(crate) struct CsvTable<'a> {
    pub file: &'a str,
    pub header: Vec<String>,
    pub rows: Vec<CsvRecord>,
}

impl<'a> CsvTable<'a> {
    /// Parses `text`; every row must have as many fields as the header.
    pub fn parse(text: &str, file: &'a str) -> Result<Self, OpeError> {
        let mut records = csv_records(text, file)?.into_iter();
        let header: Vec<String> = match records.next() {
            Some(h) => h.fields.iter().map(|f| f.trim().to_string()).collect(),
            None => {
                return Err(OpeError::File {
                    file: file.to_string(),
                    message: "the file is empty: a header row is required".to_string(),
                })
            }
        };
        for (i, name) in header.iter().enumerate() {
            if header[..i].contains(name) {
                return Err(parse_error(
                    file,
                    1,
                    Some(format!("column {} ({name})", i + 1)),
                    "duplicate column name".to_string(),
                ));
            }
        }
        let rows: Vec<CsvRecord> = records.collect();
        for row in &rows {
            if row.fields.len() != header.len() {
                return Err(parse_error(
                    file,
                    row.line,
                    None,
                    format!(
                        "{} fields, but the header has {}",
                        row.fields.len(),
                        header.len()
                    ),
                ));
            }
        }
        Ok(CsvTable { file, header, rows })
    }

    /// The index of the required column `name`.
    pub fn column(&self, name: &str) -> Result<usize, OpeError> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| OpeError::File {
                file: self.file.to_string(),
                message: format!("the header has no `{name}` column"),
            })
    }

    fn located(&self, row: &CsvRecord, col: usize, message: String) -> OpeError {
        parse_error(
            self.file,
            row.line,
            Some(format!("column {} ({})", col + 1, self.header[col])),
            message,
        )
    }

    /// A finite number.
    pub fn number(&self, row: &CsvRecord, col: usize) -> Result<f64, OpeError> {
        let raw = row.fields[col].trim();
        match raw.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(self.located(row, col, format!("`{raw}` is not a finite number"))),
        }
    }

    /// A non-negative integer.
    pub fn index(&self, row: &CsvRecord, col: usize) -> Result<usize, OpeError> {
        let raw = row.fields[col].trim();
        raw.parse::<usize>()
            .map_err(|_| self.located(row, col, format!("`{raw}` is not a non-negative integer")))
    }

    /// A probability in (0, 1].
    pub fn propensity(&self, row: &CsvRecord, col: usize) -> Result<f64, OpeError> {
        let p = self.number(row, col)?;
        if p > 0.0 && p <= 1.0 {
            Ok(p)
        } else {
            Err(self.located(row, col, format!("{p} is not a probability in (0, 1]")))
        }
    }
}
