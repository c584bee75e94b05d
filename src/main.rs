//! The `segfeat` command line: one subcommand, one function; parsing and messages only.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "segfeat",
    version,
    about = "Disease detection from segmentation features on a hand-written WGSL engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every GPU adapter, the one segfeat would choose, its backend and the limits that matter.
    Info,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info(),
    };
    if let Err(e) = result {
        eprintln!("segfeat: {e}");
        std::process::exit(1);
    }
}

fn info() -> segfeat::Result<()> {
    let (adapters, chosen) = segfeat::gpu::device::list_adapters();
    if adapters.is_empty() {
        return Err(segfeat::Error(
            segfeat::gpu::device::NO_ADAPTER_HELP.to_string(),
        ));
    }
    println!("adapters ({}):", adapters.len());
    for (i, a) in adapters.iter().enumerate() {
        let mark = if Some(i) == chosen { "*" } else { " " };
        println!(
            "{mark} [{i}] {} ({}, {}) driver: {}",
            a.name, a.backend, a.device_type, a.driver
        );
    }
    let Some(c) = chosen else {
        return Err(segfeat::Error(
            "no adapter matches SEGFEAT_ADAPTER; the list above shows the names to choose from"
                .into(),
        ));
    };
    let a = &adapters[c];
    let l = &a.limits;
    println!("chosen: [{c}] {} on {}", a.name, a.backend);
    println!(
        "  max storage buffer binding size  {} bytes ({} MiB)",
        l.max_storage_buffer_binding_size,
        l.max_storage_buffer_binding_size >> 20
    );
    println!(
        "  max buffer size                  {} bytes ({} MiB)",
        l.max_buffer_size,
        l.max_buffer_size >> 20
    );
    println!(
        "  storage buffers per shader stage {}",
        l.max_storage_buffers_per_shader_stage
    );
    println!(
        "  storage offset alignment         {} bytes",
        l.min_storage_buffer_offset_alignment
    );
    println!(
        "  workgroups per dimension         {}",
        l.max_compute_workgroups_per_dimension
    );
    println!(
        "  invocations per workgroup        {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "  workgroup storage                {} bytes",
        l.max_compute_workgroup_storage_size
    );
    println!(
        "choose another with SEGFEAT_ADAPTER=<part of its name> or WGPU_BACKEND=vulkan|metal|dx12"
    );
    Ok(())
}
