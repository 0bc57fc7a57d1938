//! RPC over named SQL: functions defined as SQL files (`definition.rs`: the header syntax and
//! the checks a file passes) and calls to them (`call.rs`: arguments, resolution, execution
//! and the shape of the result).

mod call;
mod definition;

pub use call::{Args, Call, CallRead, Functions, execute_call, split_query};
pub use definition::{Function, Param, ParamType, Returns, is_identifier};
