//! docs/design.md's layer table and diagram name every crate of the workspace
//! (its `members`), so a crate added without its place in the design fails here.

#[test]
fn the_design_layer_table_and_diagram_name_every_crate() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let design = std::fs::read_to_string(format!("{root}/docs/design.md")).unwrap();
    let workspace = std::fs::read_to_string(format!("{root}/Cargo.toml")).unwrap();
    let members = workspace.split("members = [").nth(1).and_then(|r| r.split(']').next()).expect("workspace members");
    let mut checked = 0;
    for dir in members.split(',').map(|m| m.trim().trim_matches('"')).filter(|m| !m.is_empty()) {
        if dir == "loom-tests" {
            continue; // the loom models, described under Principles and in testing.md
        }
        let manifest = std::fs::read_to_string(format!("{root}/{dir}/Cargo.toml")).unwrap();
        let name = manifest
            .lines()
            .find_map(|l| l.strip_prefix("name = ").map(|n| n.trim_matches('"').to_owned()))
            .unwrap_or_else(|| panic!("{dir}: no package name"));
        assert!(design.contains(&format!("| `{name}` |")), "docs/design.md's layer table has no row for {name}");
        let short = name.strip_prefix("numashm-").unwrap_or(&name);
        let diagram = design.split("```").nth(1).expect("the layer diagram");
        assert!(diagram.contains(short), "docs/design.md's diagram does not show {name}");
        checked += 1;
    }
    assert!(checked >= 7, "only {checked} crates found in the workspace members");
}
