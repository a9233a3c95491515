//! The published JSON Schema (`specs/schema/compute-spec.schema.json`, for editors and other
//! tools) is exactly what the types generate; `UPDATE_EXPECT=1` regenerates it.

#[test]
fn published_schema_is_up_to_date() {
    let schema = serde_json::to_string_pretty(&compute_spec::json_schema()).unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../specs/schema/compute-spec.schema.json");
    expect_test::expect_file![path].assert_eq(&schema);
}
