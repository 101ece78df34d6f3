//! Human output of the CLI: aligned tables, no colours (pipes and logs stay clean).

use std::fmt::Write as _;

use crate::api::model::{ExportEntry, FsView};

/// `127.0.0.0/8 (read-write, root squashed)`
pub fn export_summary(fs: &FsView) -> String {
    let clients = if fs.export.clients.is_empty() {
        "nobody".to_owned()
    } else {
        fs.export.clients.join(",")
    };
    format!(
        "{clients} ({}, {})",
        if fs.export.read_only {
            "read-only"
        } else {
            "read-write"
        },
        if fs.export.root_squash {
            "root squashed"
        } else {
            "no root squash"
        }
    )
}

/// One row per file system.
pub fn fs_table(all: &[FsView]) -> String {
    if all.is_empty() {
        return "no file systems (create one with `metrofs fs create NAME`)\n".into();
    }
    let header = [
        "NAME",
        "EXPORT",
        "CLIENTS",
        "ACCESS",
        "ROOT",
        "ID",
        "CREATED (UTC)",
    ];
    let rows: Vec<[String; 7]> = all
        .iter()
        .map(|f| {
            [
                f.name.clone(),
                f.export.path.clone(),
                if f.export.clients.is_empty() {
                    "-".into()
                } else {
                    f.export.clients.join(",")
                },
                if f.export.read_only { "ro" } else { "rw" }.into(),
                if f.export.root_squash {
                    "squash"
                } else {
                    "no_squash"
                }
                .into(),
                f.id.clone(),
                utc(f.created),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header);
    for r in &rows {
        line(&r.each_ref().map(String::as_str));
    }
    out
}

/// One row per export.
pub fn export_table(all: &[ExportEntry]) -> String {
    if all.is_empty() {
        return "no exports (each file system is exported as /NAME; create one with `metrofs fs create NAME`)\n".into();
    }
    let rows = all
        .iter()
        .map(|e| {
            vec![
                e.fs.clone(),
                e.export.path.clone(),
                if e.export.clients.is_empty() {
                    "nobody".into()
                } else {
                    e.export.clients.join(",")
                },
                if e.export.read_only { "ro" } else { "rw" }.into(),
                if e.export.root_squash {
                    format!("squash to {}:{}", e.export.anon_uid, e.export.anon_gid)
                } else {
                    "no_squash".into()
                },
            ]
        })
        .collect();
    table(&["FS", "PATH", "CLIENTS", "ACCESS", "ROOT"], rows)
}

/// An aligned table: a header line, then one line per row (the last column is not padded).
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(&width).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header);
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}

/// A byte count for people: `0 B`, `512 B`, `1.5 KiB`, `3.0 MiB`, `2.1 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `fs show`: one field a line.
pub fn fs_detail(f: &FsView) -> String {
    format!(
        "name:        {}\nid:          {}\ncreated:     {} UTC\nexport:      {}\nclients:     {}\naccess:      {}\nroot squash: {} (anon uid {}, gid {})\n",
        f.name,
        f.id,
        utc(f.created),
        f.export.path,
        if f.export.clients.is_empty() { "nobody".into() } else { f.export.clients.join(", ") },
        if f.export.read_only { "read-only" } else { "read-write" },
        if f.export.root_squash { "yes" } else { "no" },
        f.export.anon_uid,
        f.export.anon_gid,
    )
}

/// `YYYY-MM-DD HH:MM:SS` of Unix seconds, UTC (proleptic Gregorian, days-from-civil inverse).
pub fn utc(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days, on unsigned numbers since secs >= 0.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::ExportView;

    fn view(name: &str, clients: &[&str]) -> FsView {
        FsView {
            name: name.into(),
            id: "00000000000000ff".into(),
            created: 0,
            export: ExportView {
                path: format!("/{name}"),
                clients: clients.iter().map(|c| (*c).to_owned()).collect(),
                read_only: false,
                root_squash: true,
                anon_uid: 65534,
                anon_gid: 65534,
            },
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(bytes(u64::MAX), "16384.0 PiB");
        let t = table(&["A", "BB"], vec![vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
    }

    #[test]
    fn table_aligns() {
        let t = fs_table(&[view("a", &["127.0.0.0/8"]), view("longer-name", &[])]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        let col = lines[0].find("EXPORT").expect("header");
        assert_eq!(lines[1].find("/a"), Some(col));
        assert_eq!(lines[2].find("/longer-name"), Some(col));
        assert!(fs_table(&[]).contains("no file systems"));
        assert_eq!(
            export_summary(&view("a", &[])),
            "nobody (read-write, root squashed)"
        );
    }
}
