fn main() {
    println!("userorg: work in progress");
}
