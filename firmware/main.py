# The board runs this file from source at boot; everything else is precompiled.
import pbctl

pbctl.run()
