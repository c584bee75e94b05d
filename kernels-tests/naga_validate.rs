//! Every file in shaders/ parsed and validated by naga, with no adapter at all. The
//! sources come from the engine's one registry (`segfeat::gpu::SHADERS`, prelude joined
//! on as the engine does), and the registry must list exactly the files on disk.

use std::collections::BTreeSet;

/// Parse and validate a shader's source: (module, its info, whether it is an extension).
/// An extension (conv3x3_subgroup) uses subgroup operations; every other shader must
/// validate without any capability.
fn validated(name: &str, src: &str) -> (naga::Module, naga::valid::ModuleInfo, bool) {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(src)));
    let extension = segfeat::gpu::kernels::EXTENSIONS
        .iter()
        .any(|(n, _)| *n == name);
    let caps = if extension {
        naga::valid::Capabilities::SUBGROUP
    } else {
        naga::valid::Capabilities::empty()
    };
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}.wgsl does not validate: {}", e.emit_to_string(src)));
    (module, info, extension)
}

#[test]
fn every_shader_parses_and_validates() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir)
        .expect("shaders/ exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wgsl"))
        .map(|n| n.trim_end_matches(".wgsl").to_string())
        .collect();
    let registered: BTreeSet<String> = segfeat::gpu::SHADERS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(
        on_disk, registered,
        "shaders/ and the registry in src/gpu/kernels.rs list the same files"
    );

    let mut files = 0;
    let mut entry_points = Vec::new();
    for (name, _) in segfeat::gpu::SHADERS {
        let on_disk = std::fs::read_to_string(format!("{dir}/{name}.wgsl")).unwrap();
        let src = segfeat::gpu::kernels::source(name).unwrap();
        assert!(
            src.ends_with(&on_disk),
            "{name}: the registry holds the file on disk"
        );
        let (module, _, _) = validated(name, &src);
        files += 1;
        entry_points.extend(
            module
                .entry_points
                .iter()
                .map(|e| format!("{name}::{}", e.name)),
        );
    }
    println!(
        "validated {files} files, {} entry points: {entry_points:?}",
        entry_points.len()
    );
    assert_eq!(files, 20, "shader files validated");
    // conv3x3_subgroup holds conv3x3's 10 entry points as well as its own 2.
    assert_eq!(
        entry_points.len(),
        84,
        "entry points validated: {entry_points:?}"
    );
}

/// Every entry point (84) of every shader translated by naga's own back ends to Metal Shading
/// Language (Metal) and HLSL (DX12), with no device: a shader one of them would reject
/// fails here, although only Vulkan ever runs in CI. The subgroup extension
/// (conv3x3_subgroup) needs HLSL shader model 6.0 (wave intrinsics) and Metal's simdgroup
/// functions, both of which the back ends support; on an adapter without subgroups
/// segfeat never loads it.
#[test]
fn every_entry_point_translates_to_msl_and_hlsl() {
    let mut translated = Vec::new();
    for (name, _) in segfeat::gpu::SHADERS {
        let src = segfeat::gpu::kernels::source(name).unwrap();
        let (module, info, extension) = validated(name, &src);
        for ep in &module.entry_points {
            let stage = ep.stage;
            let (msl, _) = naga::back::msl::write_string(
                &module,
                &info,
                &naga::back::msl::Options::default(),
                &naga::back::msl::PipelineOptions {
                    entry_point: Some((stage, ep.name.clone())),
                    ..Default::default()
                },
            )
            .unwrap_or_else(|e| panic!("{name}::{} does not translate to MSL: {e}", ep.name));
            assert!(msl.contains("kernel void"), "{name}::{}: {msl}", ep.name);
            let mut hlsl = String::new();
            let options = naga::back::hlsl::Options {
                shader_model: if extension {
                    naga::back::hlsl::ShaderModel::V6_0
                } else {
                    naga::back::hlsl::ShaderModel::V5_1
                },
                ..Default::default()
            };
            let pipeline = naga::back::hlsl::PipelineOptions {
                entry_point: Some((stage, ep.name.clone())),
            };
            naga::back::hlsl::Writer::new(&mut hlsl, &options, &pipeline)
                .write(&module, &info, None)
                .unwrap_or_else(|e| panic!("{name}::{} does not translate to HLSL: {e}", ep.name));
            assert!(hlsl.contains("[numthreads("), "{name}::{}: {hlsl}", ep.name);
            translated.push(format!("{name}::{}", ep.name));
        }
    }
    assert_eq!(
        translated.len(),
        84,
        "entry points translated: {translated:?}"
    );
}
