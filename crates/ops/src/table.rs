//! Aligned text tables for people: a header row, then one row per item, columns padded to the
//! widest cell and separated by two spaces, the last column never padded (no trailing blanks).

/// Rows of cells under a header.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| (*h).to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells print empty, extra cells are dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let cell = |row: &[String], i: usize| row.get(i).map(String::as_str).unwrap_or("").to_string();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, width) in widths.iter_mut().enumerate() {
                *width = (*width).max(cell(row, i).chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let text = cell(row, i);
                if i + 1 == columns {
                    line.push_str(&text);
                } else {
                    line.push_str(&text);
                    let pad = width.saturating_sub(text.chars().count()) + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `-` for a missing value, as Kafka's tools print it.
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_else(|| "-".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell() {
        let mut t = Table::new(&["GROUP", "STATE", "PROTOCOL TYPE"]);
        t.row(vec!["orders".into(), "Stable".into(), "consumer".into()]);
        t.row(vec!["a".into(), "Empty".into(), "".into()]);
        assert_eq!(
            t.render(),
            "GROUP   STATE   PROTOCOL TYPE\n\
             orders  Stable  consumer\n\
             a       Empty\n"
        );
    }

    #[test]
    fn short_rows_and_wide_characters_do_not_break_alignment() {
        let mut t = Table::new(&["K", "V"]);
        t.row(vec!["ünï".into()]);
        t.row(vec!["x".into(), "1".into(), "dropped".into()]);
        assert_eq!(t.render(), "K    V\nünï\nx    1\n");
        assert!(!t.is_empty());
        assert!(Table::new(&["only"]).is_empty());
    }

    #[test]
    fn missing_values_print_as_a_dash() {
        assert_eq!(or_dash(Some(5)), "5");
        assert_eq!(or_dash(None::<i64>), "-");
    }
}
