//! passt: user-mode networking for virtual machines (passt(1)).
fn main() {
    passt::entry::main()
}
