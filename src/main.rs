fn main() {
    std::process::exit(shoal::run(std::env::args_os()));
}
