fn main() {
    eprintln!("vxrouter: under construction");
    std::process::exit(2);
}
