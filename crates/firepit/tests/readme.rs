//! The README's library example is `examples/quickstart.rs` (which the test command runs): the
//! README must show exactly the lines between its `README begin` / `README end` markers.

#[test]
fn readme_library_example_is_the_quickstart_example() {
    let readme = include_str!("../../../README.md");
    let example = include_str!("../examples/quickstart.rs");
    let start = readme.find("```rust\n").expect("the README has a rust block") + "```rust\n".len();
    let block = &readme[start..start + readme[start..].find("```").expect("the block ends")];
    let begin = example.find("// README begin\n").expect("begin marker") + "// README begin\n".len();
    let body = &example[begin..example.find("    // README end").expect("end marker")];
    let dedented: Vec<&str> = body.lines().map(|l| l.strip_prefix("    ").unwrap_or(l)).collect();
    assert_eq!(block.lines().collect::<Vec<_>>(), dedented, "README block and example differ");
}
