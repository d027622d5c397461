import Quarry

/// The OpenCL devices of this machine, numbered as `opencl:N`.
func openCLDevices() throws -> [Device] {
    throw ToolError(message: "the OpenCL backend is not built into this quarry yet")
}
