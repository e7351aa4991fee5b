//! `lanehub members import|export` and `lanehub backup` through the real binary, with a
//! configuration file that points `store.data_dir` at a temporary directory; the modes of the
//! files they create.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rusqlite::Connection;

use crate::common::process::{failed, succeeded};
use crate::common::sql_int;

const HEADER: &str = "phone_number,name,email,consents,enrolled_at,enrolled_lane,source";

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("lanehub.toml");
        let data = dir.path().join("data");
        let data = data.to_str().unwrap().replace('\\', "\\\\");
        std::fs::write(&config, format!("[store]\ndata_dir = \"{data}\"\n")).unwrap();
        Env { dir, config }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn run(&self, args: &[&str]) -> Output {
        self.with_config(&mut Command::new(env!("CARGO_BIN_EXE_lanehub")), args)
    }

    /// Runs `cmd args…` with this configuration and nothing from the caller's.
    fn with_config(&self, cmd: &mut Command, args: &[&str]) -> Output {
        cmd.args(args)
            .arg("--config")
            .arg(&self.config)
            .env_remove("LANEHUB_CONFIG")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    }

    /// Runs lanehub under `umask 000`, the most permissive a caller could leave.
    #[cfg(unix)]
    fn ok_with_open_umask(&self, args: &[&str]) -> String {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(r#"umask 000 && exec "$0" "$@""#)
            .arg(env!("CARGO_BIN_EXE_lanehub"));
        succeeded(self.with_config(&mut sh, args), args)
    }

    fn ok(&self, args: &[&str]) -> String {
        succeeded(self.run(args), args)
    }

    fn fails(&self, args: &[&str]) -> String {
        failed(self.run(args), args)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn import_export_reimport_and_backup() {
    let env = Env::new();
    let consents =
        r#"[{"id":"marketing","accepted":true,"required":false,"text":"Tilbud, \"kupp\""}]"#;
    let csv = format!(
        "{HEADER}\n\
         4791234567,\"Bjørn Ærø, jr.\",bjorn@example.no,\"{}\",2024-05-01T10:00:00Z,lane-1,enrollment\n\
         +4512345678,Åse,,,2024-05-02T08:00:00+02:00,,\n",
        consents.replace('"', "\"\"")
    );
    let file = env.write("members.csv", &csv);
    let out = env.ok(&["members", "import", s(&file)]);
    assert!(out.contains("2 new, 0 updated, 0 unchanged"), "{out}");

    let exported = env.path("export.csv");
    env.ok(&["members", "export", s(&exported)]);
    let text = std::fs::read_to_string(&exported).unwrap();
    let expected = format!(
        "{HEADER}\n\
         4512345678,Åse,,[],2024-05-02T06:00:00Z,,import\n\
         4791234567,\"Bjørn Ærø, jr.\",bjorn@example.no,\"{}\",2024-05-01T10:00:00Z,lane-1,enrollment\n",
        consents.replace('"', "\"\"")
    );
    assert_eq!(text, expected);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&exported).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the export holds phone numbers: owner only"
        );
    }
    // Export to stdout gives the same bytes.
    assert_eq!(env.ok(&["members", "export", "-"]), expected);
    assert_eq!(env.ok(&["members", "export"]), expected);

    // Re-importing the export with one change updates one and leaves the other.
    let changed = expected.replace("4512345678,Åse,,", "4512345678,Åse Ny,ase@example.dk,");
    let file = env.write("changed.csv", &changed);
    let out = env.ok(&["members", "import", s(&file)]);
    assert!(out.contains("0 new, 1 updated, 1 unchanged"), "{out}");

    let copy = env.path("copy.db");
    let out = env.ok(&["backup", s(&copy)]);
    assert!(out.contains("backup written to"), "{out}");
    let conn = Connection::open(&copy).unwrap();
    let names: Vec<String> = conn
        .prepare("SELECT name FROM members ORDER BY phone_number")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(names, ["Åse Ny", "Bjørn Ærø, jr."]);
    let err = env.fails(&["backup", s(&copy)]);
    assert!(err.contains("already exists"), "{err}");
}

#[cfg(unix)]
#[test]
fn the_data_directory_database_and_backups_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let env = Env::new();
    let good = env.write("good.csv", &format!("{HEADER}\n4791234567,Kari,,,,,\n"));
    // An import is the first to open the store here: it creates the data directory.
    env.ok_with_open_umask(&["members", "import", s(&good)]);
    let data = env.path("data");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("lanehub.db")), 0o600);

    let copy = env.path("copy.db");
    env.ok_with_open_umask(&["backup", s(&copy)]);
    assert_eq!(mode(&copy), 0o600);
    let into = env.path("backups");
    std::fs::create_dir(&into).unwrap();
    let out = env.ok_with_open_umask(&["backup", s(&into)]);
    let written: Vec<_> = std::fs::read_dir(&into)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(written.len(), 1, "{out}");
    assert_eq!(mode(&written[0]), 0o600, "{out}");
    // The copy is a whole database.
    let conn = Connection::open(&written[0]).unwrap();
    assert_eq!(sql_int(&conn, "SELECT count(*) FROM members"), 1);
}

#[test]
fn a_bad_row_names_line_and_column_and_imports_nothing() {
    let env = Env::new();
    let good = env.write("good.csv", &format!("{HEADER}\n4791234567,Kari,,,,,\n"));
    env.ok(&["members", "import", s(&good)]);

    let bad = env.write(
        "bad.csv",
        &format!(
            "{HEADER}\n\
             4798765432,New Member,,,,,\n\
             47-12,Broken,,,,,\n\
             4791234567,Kari Changed,,,yesterday,,\n"
        ),
    );
    let err = env.fails(&["members", "import", s(&bad)]);
    assert!(
        err.contains("2 rows are invalid, nothing was imported"),
        "{err}"
    );
    assert!(
        err.contains("line 3, column phone_number: invalid phone number"),
        "{err}"
    );
    assert!(err.contains("line 4, column enrolled_at"), "{err}");

    let out = env.ok(&["members", "export"]);
    assert_eq!(out.lines().count(), 2, "only Kari, unchanged: {out}");
    assert!(out.contains("4791234567,Kari,"), "{out}");

    let err = env.fails(&["members", "import", s(&env.path("missing.csv"))]);
    assert!(err.contains("missing.csv"), "{err}");
    let header = env.write("header.csv", "phone,name\n");
    let err = env.fails(&["members", "import", s(&header)]);
    assert!(
        err.contains("line 1 (header): unknown column `phone`"),
        "{err}"
    );
}

#[test]
fn export_and_backup_need_a_database_and_refuse_a_newer_one() {
    let env = Env::new();
    let err = env.fails(&["members", "export"]);
    assert!(err.contains("no lanehub database at"), "{err}");
    let err = env.fails(&["backup", s(&env.path("b.db"))]);
    assert!(err.contains("no lanehub database at"), "{err}");
    assert!(!env.path("data").exists(), "nothing was created");

    let good = env.write("good.csv", &format!("{HEADER}\n4791234567,Kari,,,,,\n"));
    env.ok(&["members", "import", s(&good)]);
    let db = env.path("data").join("lanehub.db");
    Connection::open(&db)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = env.fails(&["members", "export"]);
    assert!(
        err.contains("was written by a newer lanehub (schema 99, this build knows up to"),
        "{err}"
    );
    assert!(
        err.contains("refusing to start to protect your data"),
        "{err}"
    );
}

/// `backup` and `members import|export` read only `[store]` and `[log]`: they run from a shell
/// with the packaged configuration, as shipped and as made ready to go live (remote Vipps, the
/// store LAN), although the shell lacks the service's secrets, which the service checks.
#[test]
fn database_commands_work_with_the_packaged_configuration() {
    let shipped = include_str!("../../packaging/lanehub.toml");
    let live = shipped
        .replace("mode = \"simulator\"", "mode = \"remote\"")
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"0.0.0.0:8080\"");
    assert_ne!(live, shipped, "the packaged file changed: update this test");
    for text in [shipped, live.as_str()] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("lanehub.toml");
        std::fs::write(&config, text).unwrap();
        let run = |args: &[&str]| {
            Command::new(env!("CARGO_BIN_EXE_lanehub"))
                .args(args)
                .env_remove("LANEHUB_CONFIG")
                // The packaged /var/lib/lanehub is not the test's to write.
                .env("LANEHUB__STORE__DATA_DIR", dir.path().join("data"))
                .output()
                .unwrap()
        };
        let ok = |args: &[&str]| succeeded(run(args), args);
        let members = dir.path().join("members.csv");
        std::fs::write(
            &members,
            format!("{HEADER}\n4791234567,Kari,,,2024-05-01T10:00:00Z,,\n"),
        )
        .unwrap();
        let c = s(&config);
        let out = ok(&["members", "import", "--config", c, s(&members)]);
        assert!(out.contains("1 new"), "{out}");
        let out = ok(&["members", "export", "--config", c, "-"]);
        assert!(out.contains("4791234567,Kari"), "{out}");
        let copy = dir.path().join("copy.db");
        let out = ok(&["backup", "--config", c, s(&copy)]);
        assert!(out.contains("backup written to"), "{out}");
        // The service's own check still sees what is missing.
        let check = run(&["check-config", c]);
        assert_eq!(check.status.success(), text == shipped, "{check:?}");
    }
}
