//! pasta: user-mode networking for network namespaces (passt(1)).
fn main() {
    passt::entry::main()
}
