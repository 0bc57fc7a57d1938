//! The `sqlite-rest` binary.

fn main() {
    println!("sqlite-rest {}", env!("CARGO_PKG_VERSION"));
}
