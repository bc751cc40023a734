fn main() {
    println!("corezk-loadgen: not yet implemented (see issue 4)");
}
