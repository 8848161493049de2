//! The video panes on the GPU: frame textures, the alignment overlay and `shaders/video.wgsl`,
//! drawn inside egui's render pass through a paint callback. Frames are uploaded when new ones
//! arrive; the panes are redrawn at the display's rate from whatever was uploaded last, so the
//! window never waits on the engine.

use egui_wgpu::wgpu;

/// Which pane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaneId {
    /// The camera crop the model sees (with the alignment overlay).
    Camera = 0,
    /// The animated portrait as the virtual camera gets it.
    Output = 1,
}

/// How a pane is drawn this frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaneParams {
    /// The square of the frame to show, in texture coordinates (u0, v0, u1, v1).
    pub crop: [f32; 4],
    /// Flip horizontally.
    pub mirror: bool,
    /// 0: no overlay.
    pub overlay_opacity: f32,
    /// Draw the last frame (false: the empty pane, e.g. no camera).
    pub visible: bool,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PaneUniform {
    crop: [f32; 4],
    flags: [f32; 4],
}

struct Pane {
    frame: wgpu::Texture,
    frame_size: (u32, u32),
    has_frame: bool,
    uniform: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

/// The GPU side of the panes; lives in egui-wgpu's callback resources.
pub struct VideoRenderer {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    sampler: wgpu::Sampler,
    format: wgpu::TextureFormat,
    overlay: wgpu::Texture,
    panes: Vec<Pane>,
}

/// The shader, built into the binary.
pub const SHADER: &str = include_str!("../../shaders/video.wgsl");

fn texture(
    device: &wgpu::Device,
    format: wgpu::TextureFormat,
    (w, h): (u32, u32),
    label: &str,
) -> wgpu::Texture {
    device.create_texture(&wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d {
            width: w.max(1),
            height: h.max(1),
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    })
}

fn rgba_of(rgb: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rgb.len() / 3 * 4);
    for p in rgb.chunks_exact(3) {
        out.extend_from_slice(&[p[0], p[1], p[2], 255]);
    }
    out
}

fn write(queue: &wgpu::Queue, tex: &wgpu::Texture, (w, h): (u32, u32), rgba: &[u8]) {
    queue.write_texture(
        wgpu::TexelCopyTextureInfo {
            texture: tex,
            mip_level: 0,
            origin: wgpu::Origin3d::ZERO,
            aspect: wgpu::TextureAspect::All,
        },
        rgba,
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(4 * w),
            rows_per_image: Some(h),
        },
        wgpu::Extent3d {
            width: w,
            height: h,
            depth_or_array_layers: 1,
        },
    );
}

impl VideoRenderer {
    /// `target`: the window surface's format (the pane colours are written as they are: an sRGB
    /// target gets sRGB textures so nothing is encoded twice).
    pub fn new(device: &wgpu::Device, target: wgpu::TextureFormat) -> Self {
        let format = if target.is_srgb() {
            wgpu::TextureFormat::Rgba8UnormSrgb
        } else {
            wgpu::TextureFormat::Rgba8Unorm
        };
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("video.wgsl"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let tex_entry = |binding| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::FRAGMENT,
            ty: wgpu::BindingType::Texture {
                multisampled: false,
                sample_type: wgpu::TextureSampleType::Float { filterable: true },
                view_dimension: wgpu::TextureViewDimension::D2,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("video panes"),
            entries: &[
                tex_entry(0),
                tex_entry(1),
                wgpu::BindGroupLayoutEntry {
                    binding: 2,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Sampler(wgpu::SamplerBindingType::Filtering),
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 3,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("video panes"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("video panes"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("vs_main"),
                buffers: &[],
                compilation_options: wgpu::PipelineCompilationOptions::default(),
            },
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("fs_main"),
                targets: &[Some(wgpu::ColorTargetState {
                    format: target,
                    blend: None,
                    write_mask: wgpu::ColorWrites::ALL,
                })],
                compilation_options: wgpu::PipelineCompilationOptions::default(),
            }),
            multiview_mask: None,
            cache: None,
        });
        let sampler = device.create_sampler(&wgpu::SamplerDescriptor {
            label: Some("video panes"),
            mag_filter: wgpu::FilterMode::Linear,
            min_filter: wgpu::FilterMode::Linear,
            ..Default::default()
        });
        let overlay = texture(device, format, (1, 1), "overlay");
        let mut r = Self {
            pipeline,
            layout,
            sampler,
            format,
            overlay,
            panes: Vec::new(),
        };
        for label in ["camera pane", "output pane"] {
            let frame = texture(device, format, (1, 1), label);
            let uniform = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: std::mem::size_of::<PaneUniform>() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let bind_group = r.bind_group(device, &frame, &uniform);
            r.panes.push(Pane {
                frame,
                frame_size: (1, 1),
                has_frame: false,
                uniform,
                bind_group,
            });
        }
        r
    }

    fn bind_group(
        &self,
        device: &wgpu::Device,
        frame: &wgpu::Texture,
        uniform: &wgpu::Buffer,
    ) -> wgpu::BindGroup {
        let fv = frame.create_view(&wgpu::TextureViewDescriptor::default());
        let ov = self
            .overlay
            .create_view(&wgpu::TextureViewDescriptor::default());
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("video pane"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::TextureView(&fv),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: wgpu::BindingResource::TextureView(&ov),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: wgpu::BindingResource::Sampler(&self.sampler),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: uniform.as_entire_binding(),
                },
            ],
        })
    }

    /// Uploads an RGB8 frame to a pane (a new texture when the size changed).
    pub fn upload_frame(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        pane: PaneId,
        (w, h): (u32, u32),
        rgb: &[u8],
    ) {
        if w == 0 || h == 0 || rgb.len() != w as usize * h as usize * 3 {
            return;
        }
        let i = pane as usize;
        if self.panes[i].frame_size != (w, h) {
            let frame = texture(device, self.format, (w, h), "pane frame");
            let bind_group = self.bind_group(device, &frame, &self.panes[i].uniform);
            let p = &mut self.panes[i];
            p.frame = frame;
            p.frame_size = (w, h);
            p.bind_group = bind_group;
        }
        write(queue, &self.panes[i].frame, (w, h), &rgba_of(rgb));
        self.panes[i].has_frame = true;
    }

    /// Sets the overlay portrait (square RGB8).
    pub fn upload_overlay(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        (w, h): (u32, u32),
        rgb: &[u8],
    ) {
        if w == 0 || h == 0 || rgb.len() != w as usize * h as usize * 3 {
            return;
        }
        self.overlay = texture(device, self.format, (w, h), "overlay");
        write(queue, &self.overlay, (w, h), &rgba_of(rgb));
        for i in 0..self.panes.len() {
            let bg = self.bind_group(device, &self.panes[i].frame, &self.panes[i].uniform);
            self.panes[i].bind_group = bg;
        }
    }
}

/// Draws one pane inside egui's render pass.
pub struct PaneCallback {
    /// Which pane.
    pub pane: PaneId,
    /// How to draw it.
    pub params: PaneParams,
}

impl egui_wgpu::CallbackTrait for PaneCallback {
    fn prepare(
        &self,
        _device: &wgpu::Device,
        queue: &wgpu::Queue,
        _screen: &egui_wgpu::ScreenDescriptor,
        _encoder: &mut wgpu::CommandEncoder,
        resources: &mut egui_wgpu::CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        if let Some(r) = resources.get::<VideoRenderer>() {
            let p = &r.panes[self.pane as usize];
            let u = PaneUniform {
                crop: self.params.crop,
                flags: [
                    f32::from(u8::from(self.params.mirror)),
                    self.params.overlay_opacity.clamp(0.0, 1.0),
                    f32::from(u8::from(p.has_frame && self.params.visible)),
                    0.0,
                ],
            };
            queue.write_buffer(&p.uniform, 0, bytemuck::bytes_of(&u));
        }
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        render_pass: &mut wgpu::RenderPass<'static>,
        resources: &egui_wgpu::CallbackResources,
    ) {
        // Without the renderer (a test harness that draws panels only) the pane stays empty.
        if let Some(r) = resources.get::<VideoRenderer>() {
            render_pass.set_pipeline(&r.pipeline);
            render_pass.set_bind_group(0, &r.panes[self.pane as usize].bind_group, &[]);
            render_pass.draw(0..6, 0..1);
        }
    }
}
