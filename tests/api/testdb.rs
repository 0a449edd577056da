//! Fresh databases: a SQLite file always, and a PostgreSQL database of its own per test when
//! `TEST_DATABASE_URL` names a server (e.g. `postgres://postgres@127.0.0.1:5432/postgres`).

use std::io::Write;

use sqlx::{Connection, Executor, PgConnection};

/// One fresh database, dropped (PostgreSQL) or deleted (SQLite) at the end.
pub struct TestDb {
    pub url: String,
    /// Which backend, for assertion messages.
    pub backend: &'static str,
    place: Place,
}

enum Place {
    File { _dir: tempfile::TempDir },
    Server { server: String, name: String },
}

impl TestDb {
    /// A SQLite database in a temporary folder.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            url: format!("sqlite://{}", dir.path().join("test.db").display()),
            backend: "sqlite",
            place: Place::File { _dir: dir },
        }
    }

    /// A new database `sts_test_<uuid>` on the `TEST_DATABASE_URL` server; `None`, saying so
    /// on the terminal, when that is not set.
    pub async fn postgres(test: &str) -> Option<Self> {
        let Ok(server) = std::env::var("TEST_DATABASE_URL") else {
            // Straight to stderr: the test harness captures `eprintln!` of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: TEST_DATABASE_URL not set ({test} on PostgreSQL)"
            );
            return None;
        };
        let name = format!("sts_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&server)
            .await
            .expect("TEST_DATABASE_URL: cannot connect");
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap();
        let mut url = url::Url::parse(&server).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        Some(Self {
            url: url.to_string(),
            backend: "postgres",
            place: Place::Server { server, name },
        })
    }

    /// SQLite, and PostgreSQL when configured.
    pub async fn all(test: &str) -> Vec<Self> {
        let mut dbs = vec![Self::sqlite()];
        dbs.extend(Self::postgres(test).await);
        dbs
    }
}

impl Drop for TestDb {
    /// Drops a PostgreSQL database even when the test failed, disconnecting brokers still
    /// running on it. On a thread of its own: `Drop` cannot await on the test's runtime.
    fn drop(&mut self) {
        let Place::Server { server, name } = &self.place else {
            return;
        };
        let (server, name) = (server.clone(), name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&server).await?;
                admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .await
                    .map(|_| ())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            let _ = writeln!(std::io::stderr(), "could not drop test database: {e}");
        }
    }
}
