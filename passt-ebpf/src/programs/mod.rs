//! One module per attach point.

mod tc;
