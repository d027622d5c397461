// The OpenCL backend (see issue: OpenCL backend).
import COpenCL
