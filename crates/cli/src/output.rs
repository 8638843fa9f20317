//! What `wh` prints: colours only on a terminal (and never with `NO_COLOR`), tables of
//! aligned columns, JSON with `--json`.

use std::io::IsTerminal;

fn colour_on(stream_is_tty: bool) -> bool {
    stream_is_tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn paint(code: &str, text: &str, tty: bool) -> String {
    if colour_on(tty) { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
}

pub fn green(text: &str) -> String {
    paint("32", text, std::io::stdout().is_terminal())
}

pub fn dim(text: &str) -> String {
    paint("2", text, std::io::stdout().is_terminal())
}

/// `error: …` in red on a terminal, plain otherwise (standard error).
pub fn error_line(text: &str) -> String {
    format!("{} {text}", paint("31", "error:", std::io::stderr().is_terminal()))
}

/// Prints rows under a header, columns padded to the widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths.get(i).copied().unwrap_or(0)))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let head: Vec<String> = header.iter().map(|h| h.to_uppercase()).collect();
    println!("{}", dim(&line(&head)));
    for row in rows {
        println!("{}", line(row));
    }
}

pub fn json(value: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}
