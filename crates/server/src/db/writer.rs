//! Where the single writer lives (the write API arrives in a later change).
//!
//! Design, so the read side already fits it: every write (POST/PATCH/PUT/DELETE) is sent as a
//! job over a bounded queue to ONE task that owns the only read-write connection
//! ([`crate::db::Database::take_writer_connection`], opened with
//! [`crate::db::OpenOptions::writer`], later with `wal_autocheckpoint: Some(0)` once replication
//! owns checkpoints). The task drains the queue in batches and commits each batch in one
//! `BEGIN IMMEDIATE … COMMIT` (group commit; a failing job rolls back to its own savepoint),
//! answers every job through a oneshot channel, and after each commit publishes the new
//! commit position on a watch channel that replication subscribes to. The task stops when the
//! shared shutdown token is cancelled, after finishing the batch in hand.
