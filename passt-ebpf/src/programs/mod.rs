//! One module per attach point.

mod lookup;
mod tc;
