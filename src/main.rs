//! The `segfeat` command line: one subcommand, one function; parsing and messages only.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use segfeat::data::{self, folder, phantom::PhantomSpec, Dataset, Group};
use segfeat::nn::checkpoint;
use segfeat::nn::UnetConfig;
use segfeat::train::{cv, seg, SegTrainOptions};
use segfeat::{bail, Error, Gpu, Result};

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
    /// Print the U-Net's layers: output shape, parameters and forward FLOPs, with totals.
    Summary {
        /// Channels of the first convolution (n).
        #[arg(long, default_value_t = 16)]
        channels: usize,
        /// Input height and width (a multiple of 16).
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// Output labels (N).
        #[arg(long, default_value_t = 6)]
        labels: usize,
    },
    /// Write the synthetic cardiac CT set (normals and both diseases) as a data folder.
    Phantom {
        #[command(flatten)]
        spec: PhantomArgs,
        /// Output folder (gets images/, masks/ and manifest.csv).
        #[arg(long)]
        out: PathBuf,
    },
    /// Train the segmentation network on normal images.
    TrainSeg {
        #[command(flatten)]
        data: DataArgs,
        /// Channels of the first convolution (n).
        #[arg(long, default_value_t = 16)]
        channels: usize,
        #[command(flatten)]
        train: TrainArgs,
        /// Patients to train on (comma-separated ids; default: every normal patient).
        #[arg(long)]
        patients: Option<String>,
        /// Model file to write (safetensors), updated after every epoch.
        #[arg(long)]
        out: PathBuf,
        /// Continue the training saved in --out from its last epoch.
        #[arg(long)]
        resume: bool,
    },
    /// Dice of each label, and their mean, of a model on a data set.
    EvalSeg {
        /// Model file (safetensors) written by train-seg.
        #[arg(long)]
        model: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        /// Patients to evaluate (comma-separated ids; default: every patient).
        #[arg(long)]
        patients: Option<String>,
        /// Also write the per-image and per-label Dice as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// k-fold cross-validation by patient for several n (the paper's Table 1); resumable.
    CvSeg {
        #[command(flatten)]
        data: DataArgs,
        /// The values of n to compare, comma-separated.
        #[arg(long = "channels", default_value = "8,16,32,64")]
        channel_list: String,
        #[arg(long, default_value_t = 4)]
        folds: usize,
        #[command(flatten)]
        train: TrainArgs,
        /// Output folder: cv.jsonl (as folds finish), cv.md, cv.csv, one model per fold.
        #[arg(long)]
        out: PathBuf,
    },
    /// Segment one image: an overlay PNG with one colour per label, optionally the probabilities.
    Segment {
        #[arg(long)]
        model: PathBuf,
        /// A grayscale PNG (any size; resized to the model's input).
        #[arg(long)]
        input: PathBuf,
        /// The overlay PNG to write, at the input's size.
        #[arg(long)]
        out: PathBuf,
        /// Also write the softmax probabilities (labels, S, S) as safetensors.
        #[arg(long)]
        probs: Option<PathBuf>,
    },
}

#[derive(Args, Clone)]
struct DataArgs {
    /// A data folder (images/*.png, masks/*.png), or `phantom` for the built-in generator.
    #[arg(long)]
    data: String,
    /// CSV (r,g,b,label) mapping the masks' colours to labels.
    #[arg(long)]
    palette: Option<PathBuf>,
    /// Label names in index order (a folder's masks must use indices below their count).
    #[arg(long, default_value = "BG,RA,LA,RV,LV,Myo")]
    label_names: String,
    /// Seed of the phantom (with --data phantom).
    #[arg(long, default_value_t = 1)]
    phantom_seed: u64,
}

#[derive(Args, Clone)]
struct TrainArgs {
    /// Input height and width (a multiple of 16); images are resized to it.
    #[arg(long, default_value_t = 256)]
    size: usize,
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    #[arg(long, default_value_t = 100)]
    batches_per_epoch: usize,
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = segfeat::train::DEFAULT_LR)]
    lr: f32,
    /// Seed of the weights and the batch order.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl TrainArgs {
    fn options(&self, channels: usize) -> SegTrainOptions {
        SegTrainOptions {
            channels,
            size: self.size,
            epochs: self.epochs,
            batches_per_epoch: self.batches_per_epoch,
            batch: self.batch,
            lr: self.lr,
            seed: self.seed,
            progress: true,
        }
    }
}

#[derive(Args, Clone)]
struct PhantomArgs {
    #[arg(long, default_value_t = 256)]
    size: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 40)]
    normal_patients: usize,
    /// Slices per normal patient, as MIN..MAX.
    #[arg(long, default_value = "9..12")]
    slices: String,
    /// Images of pericardial effusion.
    #[arg(long, default_value_t = 30)]
    effusion: usize,
    /// Images of septal defect.
    #[arg(long, default_value_t = 30)]
    septal: usize,
    /// Effusion thickness at severity 0..1, in heart half-lengths (about 50 px at 256).
    #[arg(long, default_value = "0.02..0.2")]
    effusion_thickness: String,
    /// Fraction of the circumference the effusion covers at severity 0..1.
    #[arg(long, default_value = "0.25..1")]
    effusion_coverage: String,
    /// Septal defect width at severity 0..1, in heart half-lengths.
    #[arg(long, default_value = "0.03..0.3")]
    defect_width: String,
}

fn range<T: std::str::FromStr>(s: &str, flag: &str) -> Result<(T, T)> {
    let parsed = s
        .split_once("..")
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
    parsed.ok_or_else(|| Error(format!("--{flag} must be a range MIN..MAX, got '{s}'")))
}

impl PhantomArgs {
    fn spec(&self) -> Result<PhantomSpec> {
        Ok(PhantomSpec {
            size: self.size,
            seed: self.seed,
            normal_patients: self.normal_patients,
            slices: range(&self.slices, "slices")?,
            effusion_images: self.effusion,
            septal_images: self.septal,
            effusion_thickness: range(&self.effusion_thickness, "effusion-thickness")?,
            effusion_coverage: range(&self.effusion_coverage, "effusion-coverage")?,
            defect_width: range(&self.defect_width, "defect-width")?,
            ..PhantomSpec::default()
        })
    }
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info(),
        Command::Summary {
            channels,
            size,
            labels,
        } => summary(channels, size, labels),
        Command::Phantom { spec, out } => write_phantom(&spec, &out),
        Command::TrainSeg {
            data,
            channels,
            train,
            patients,
            out,
            resume,
        } => train_seg(
            &data,
            &train.options(channels),
            patients.as_deref(),
            &out,
            resume,
        ),
        Command::EvalSeg {
            model,
            data,
            patients,
            json,
        } => eval_seg(&model, &data, patients.as_deref(), json.as_deref()),
        Command::CvSeg {
            data,
            channel_list,
            folds,
            train,
            out,
        } => cv_seg(&data, &channel_list, folds, &train, &out),
        Command::Segment {
            model,
            input,
            out,
            probs,
        } => segment(&model, &input, &out, probs.as_deref()),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Load `--data` at `size`: the phantom, or a folder checked file by file.
fn load_data(args: &DataArgs, size: usize) -> Result<Dataset> {
    let names = data::parse_list(&args.label_names);
    if names.len() < 2 {
        bail!(
            "--label-names needs at least two names, got '{}'",
            args.label_names
        );
    }
    if args.data == "phantom" {
        if args.palette.is_some() {
            bail!("--palette applies to a data folder, not to --data phantom");
        }
        let spec = PhantomSpec {
            size,
            seed: args.phantom_seed,
            ..PhantomSpec::default()
        };
        eprintln!(
            "generating the phantom at {size}x{size} (seed {})",
            args.phantom_seed
        );
        return spec.generate();
    }
    let palette = match &args.palette {
        Some(p) => Some(folder::read_palette(p, names.len())?),
        None => None,
    };
    folder::load(Path::new(&args.data), size, &names, palette.as_ref())
}

fn info() -> Result<()> {
    let (adapters, chosen) = segfeat::gpu::device::list_adapters();
    if adapters.is_empty() {
        return Err(Error(segfeat::gpu::device::NO_ADAPTER_HELP.to_string()));
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
        return Err(Error(
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

fn summary(channels: usize, size: usize, labels: usize) -> Result<()> {
    let config = UnetConfig::new(channels, labels, size)?;
    println!(
        "U-Net (Wong et al. 2017): n={channels}, {labels} labels, input 1x{size}x{size}; FLOPs per image"
    );
    println!(
        "{:<14} {:<12} {:>18} {:>12} {:>16}",
        "layer", "kind", "output (C,H,W)", "params", "forward FLOPs"
    );
    let rows = config.summary();
    for r in &rows {
        let shape = format!("{}x{}x{}", r.shape[0], r.shape[1], r.shape[2]);
        println!(
            "{:<14} {:<12} {:>18} {:>12} {:>16}",
            r.name, r.kind, shape, r.params, r.flops
        );
    }
    let params: u64 = rows.iter().map(|r| r.params).sum();
    let flops: u64 = rows.iter().map(|r| r.flops).sum();
    println!(
        "total: {params} parameters ({:.2} MB as f32), {:.3} GFLOP forward per image",
        params as f64 * 4.0 / 1e6,
        flops as f64 / 1e9
    );
    println!("FLOPs: 2 per multiply-add, 1 per bias add and per ELU; pooling, upsampling and concatenation count 0");
    println!("feature maps for the classifier: SEG = out ({labels} channels), CONCAT = concat1 ({} channels)", 3 * channels);
    Ok(())
}

fn write_phantom(args: &PhantomArgs, out: &Path) -> Result<()> {
    let spec = args.spec()?;
    let t0 = std::time::Instant::now();
    let ds = spec.generate()?;
    folder::write(&ds, out)?;
    let count = |g: Group| ds.samples.iter().filter(|s| s.group == g).count();
    println!(
        "wrote {} images ({} normal from {} patients, {} effusion, {} septal defect) at {}x{} to {} in {:.1} s",
        ds.samples.len(),
        count(Group::Normal),
        spec.normal_patients,
        count(Group::Effusion),
        count(Group::Septal),
        spec.size,
        spec.size,
        out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn train_seg(
    data_args: &DataArgs,
    opts: &SegTrainOptions,
    patients: Option<&str>,
    out: &Path,
    resume: bool,
) -> Result<()> {
    UnetConfig::new(opts.channels, 2, opts.size)?;
    let all = load_data(data_args, opts.size)?;
    let list = patients.map(data::parse_list);
    let ds = all.select(list.as_deref(), &[Group::Normal])?;
    if ds.samples.is_empty() {
        bail!("no normal images to train on in {}", data_args.data);
    }
    let gpu = Gpu::new()?;
    eprintln!(
        "training n={} at {}x{} on {} normal images of {} patients, on {}",
        opts.channels,
        opts.size,
        opts.size,
        ds.samples.len(),
        ds.patients().len(),
        gpu.adapter().name
    );
    seg::train(&gpu, &ds, opts, out, resume)?;
    println!("model: {}", out.display());
    Ok(())
}

fn eval_seg(
    model: &Path,
    data_args: &DataArgs,
    patients: Option<&str>,
    json: Option<&Path>,
) -> Result<()> {
    let gpu = Gpu::new()?;
    let (unet, meta) = checkpoint::load_unet(&gpu, model)?;
    let mut args = data_args.clone();
    args.label_names = meta.label_names.join(",");
    let all = load_data(&args, unet.config.size)?;
    let list = patients.map(data::parse_list);
    let ds = all.select(
        list.as_deref(),
        &[Group::Normal, Group::Effusion, Group::Septal],
    )?;
    let seen: Vec<String> = ds
        .patients()
        .into_iter()
        .filter(|p| ds.source == meta.data && meta.patients.contains(p))
        .collect();
    if !seen.is_empty() {
        let shown: Vec<&str> = seen.iter().take(8).map(String::as_str).collect();
        eprintln!(
            "note: {} of the {} patients evaluated were in the model's training set ({}{}); pass --patients to hold them out",
            seen.len(),
            ds.patients().len(),
            shown.join(","),
            if seen.len() > 8 { ",..." } else { "" }
        );
    }
    let report = seg::evaluate(&gpu, &unet, &ds, 10)?;
    println!(
        "Dice on {} images of {} patients (mean +- std over images where the label is present in truth or prediction):",
        ds.samples.len(),
        ds.patients().len()
    );
    let mut per_label = serde_json::Map::new();
    for (l, name) in meta.label_names.iter().enumerate().skip(1) {
        let (m, s, n) = report.label_stats(l);
        println!("  {name:<6} {m:.4} +- {s:.4}  ({n} images)");
        per_label.insert(
            name.clone(),
            serde_json::json!({"mean": m, "std": s, "images": n}),
        );
    }
    println!("  mean   {:.4}", report.mean());
    if let Some(p) = json {
        let v = serde_json::json!({
            "model": model.display().to_string(),
            "data": data_args.data,
            "labels": per_label,
            "mean_dice": report.mean(),
            "images": report.images,
            "dice": report.dice,
        });
        checkpoint::write_atomic(p, format!("{v:#}\n").as_bytes())?;
        println!("wrote {}", p.display());
    }
    Ok(())
}

fn cv_seg(
    data_args: &DataArgs,
    channel_list: &str,
    folds: usize,
    train: &TrainArgs,
    out: &Path,
) -> Result<()> {
    let channels: Vec<usize> = channel_list
        .split(',')
        .map(|s| s.trim().parse().ok().filter(|&n: &usize| n > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            Error(format!(
                "--channels must be a comma-separated list of positive numbers, got '{channel_list}'"
            ))
        })?;
    let opts = train.options(channels[0]);
    UnetConfig::new(1, 2, opts.size)?;
    let ds = load_data(data_args, opts.size)?;
    let gpu = Gpu::new()?;
    let md = cv::run(&gpu, &ds, &channels, folds, &opts, out)?;
    println!("{md}");
    println!(
        "wrote {} and {}",
        out.join("cv.md").display(),
        out.join("cv.csv").display()
    );
    Ok(())
}

/// Colours of the overlay, by label (the chd-ct-mini palette; grey beyond six labels).
const COLOURS: [[u8; 3]; 6] = [
    [0, 0, 0],
    [255, 255, 0],
    [0, 0, 255],
    [0, 255, 0],
    [255, 0, 0],
    [255, 0, 255],
];

fn segment(model: &Path, input: &Path, out: &Path, probs: Option<&Path>) -> Result<()> {
    let gpu = Gpu::new()?;
    let (unet, meta) = checkpoint::load_unet(&gpu, model)?;
    let s = unet.config.size;
    let img = image::open(input)
        .map_err(|e| Error(format!("{}: unreadable image: {e}", input.display())))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let pixels = folder::intensities(&img);
    let x = if (w, h) == (s, s) {
        pixels.clone()
    } else {
        data::resize_bilinear(&pixels, w, h, s)
    };
    let labels = seg::predict(&gpu, &unet, &x, 1)?;
    let labels = if (w, h) == (s, s) {
        labels
    } else {
        data::resize_nearest(&labels, (s, s), (w, h))
    };
    let mut rgb = image::RgbImage::new(w as u32, h as u32);
    for (i, px) in rgb.pixels_mut().enumerate() {
        let g = (pixels[i].clamp(0.0, 1.0) * 255.0) as f32;
        let l = labels[i] as usize;
        px.0 = if l == 0 {
            [g as u8; 3]
        } else {
            let c = COLOURS.get(l).copied().unwrap_or([128, 128, 128]);
            [0, 1, 2].map(|k| (0.55 * g + 0.45 * c[k] as f32) as u8)
        };
    }
    rgb.save(out)
        .map_err(|e| Error(format!("cannot write {}: {e}", out.display())))?;
    let counts: Vec<String> = meta
        .label_names
        .iter()
        .enumerate()
        .skip(1)
        .map(|(l, n)| {
            format!(
                "{n} {}",
                labels.iter().filter(|&&v| v as usize == l).count()
            )
        })
        .collect();
    println!(
        "wrote {} (pixels per label: {})",
        out.display(),
        counts.join(", ")
    );
    if let Some(p) = probs {
        let prob = seg::probabilities(&gpu, &unet, &x)?;
        let mut md = std::collections::BTreeMap::new();
        md.insert("label_names".to_string(), meta.label_names.join(","));
        md.insert("source".to_string(), input.display().to_string());
        checkpoint::save(
            p,
            &[("probs".to_string(), vec![unet.config.labels, s, s], prob)],
            &md,
        )?;
        println!("wrote {} (probs: labels x {s} x {s})", p.display());
    }
    Ok(())
}
