//! One module per attach point.

mod sockmap;
mod tc;
