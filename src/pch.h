// Precompiled header: LibTorch's headers dominate the build time of every
// translation unit that includes them.
#pragma once
#include <torch/torch.h>
