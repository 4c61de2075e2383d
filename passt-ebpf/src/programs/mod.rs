//! One module per attach point.

mod lookup;
mod sockmap;
mod tc;
