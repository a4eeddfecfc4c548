// A libtorch host that runs fhdr's Nuke drop-in as Nuke's Inference node does: it loads the scripted module
// with torch::jit::load (no Python), sets its knobs as attributes, and runs forward on one (1, 3, H, W) frame.
//
//   libtorch_host MODULE.pt IN.f32 H W OUT.f32 [strength [half]]
//
// IN.f32 and OUT.f32 are raw little-endian float32 arrays in NCHW order (OUT has the module's output channels).
// "half" runs the module and its input in half precision, as Nuke's "Optimize for Speed and Memory" does.
// Build: g++ -std=c++20 libtorch_host.cpp -I$TORCH/include -I$TORCH/include/torch/csrc/api/include
//        -L$TORCH/lib -ltorch -ltorch_cpu -lc10 -Wl,-rpath,$TORCH/lib  (TORCH: the torch wheel's folder)
#include <torch/script.h>
#include <torch/version.h>

#include <fstream>
#include <iostream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 6) {
    std::cerr << "usage: libtorch_host MODULE.pt IN.f32 H W OUT.f32 [strength [half]]\n";
    return 2;
  }
  const int64_t height = std::stoll(argv[3]);
  const int64_t width = std::stoll(argv[4]);
  std::vector<float> pixels(3 * height * width);
  std::ifstream in(argv[2], std::ios::binary);
  if (!in.read(reinterpret_cast<char*>(pixels.data()), pixels.size() * sizeof(float))) {
    std::cerr << argv[2] << ": cannot read " << pixels.size() << " floats\n";
    return 1;
  }
  try {
    torch::jit::script::Module module = torch::jit::load(argv[1]);
    module.eval();
    if (argc > 6) {
      module.setattr("strength", std::stod(argv[6]));
    }
    const bool half = argc > 7 && std::string(argv[7]) == "half";
    torch::Tensor x = torch::from_blob(pixels.data(), {1, 3, height, width}, torch::kFloat32).clone();
    if (half) {
      module.to(torch::kHalf);
      x = x.to(torch::kHalf);
    }
    torch::InferenceMode guard;
    torch::Tensor y = module.forward({x}).toTensor().to(torch::kFloat32).contiguous();
    std::ofstream out(argv[5], std::ios::binary);
    out.write(reinterpret_cast<const char*>(y.data_ptr<float>()), y.numel() * sizeof(float));
    std::cout << "channels " << y.size(1) << " libtorch " << TORCH_VERSION << "\n";
    return out ? 0 : 1;
  } catch (const std::exception& exc) {
    std::cerr << "error: " << exc.what() << "\n";
    return 1;
  }
}
